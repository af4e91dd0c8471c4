"""`tidings analytics ...` and `tidings segment ...` print the store's figures as tables and
refuse bad input with one line naming the option or the rule's path."""

from __future__ import annotations

from datetime import timedelta

from bench.analytics_data import START, load
from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack
from tidings.analytics import MetricsFilter, Period

PERIOD = ("--start", START.isoformat(), "--end", (START + timedelta(days=5)).isoformat())


async def test_analytics_commands_print_the_figures(cli: Cli, stack: Stack) -> None:
    await load(stack.tidings.store.engine, 0.0003)
    period = Period(start=START, end=START + timedelta(days=5))
    m = await stack.tidings.store.analytics_metrics(period, MetricsFilter(template_id="t01"))
    printed = ok(await cli("analytics", "metrics", *PERIOD, "--template", "t01"))
    first_row = printed.split("period")[1].splitlines()[4]  # title, rule, header, rule, row
    cells = [c.strip() for c in first_row.split("│")[1:-1]]
    assert cells[:4] == [
        str(m.counts.notifications),
        str(m.counts.sent),
        str(m.counts.delivered),
        str(m.counts.failed),
    ]
    assert f"{m.counts.open_rate:.1%}" in first_row
    assert all(p.at.strftime("%Y-%m-%d") in printed for p in m.series)
    printed = ok(
        await cli("analytics", "templates", *PERIOD, "--minimum-sample", "3", "--by", "click_rate")
    )
    assert "t0" in printed
    for command in ("channels", "providers"):
        printed = ok(await cli("analytics", command, *PERIOD))
        assert "email" in printed and "sms" in printed
    printed = ok(await cli("analytics", "profile", "u0000004"))
    assert "user u0000004" in printed and "busiest local hours" in printed


async def test_bad_analytics_input_is_one_line(cli: Cli) -> None:
    one_line_error(await cli("analytics", "metrics", "--start", START.isoformat()), "--end")
    one_line_error(
        await cli("analytics", "metrics", *PERIOD[:2], "--end", "2026-10-01T00:00:00"),
        "no UTC offset",
    )
    one_line_error(
        await cli("analytics", "metrics", "--variant", "a"), "variant: give experiment_id too"
    )
    one_line_error(await cli("analytics", "profile", "ghost"), "user 'ghost' not found")


async def test_segment_commands(cli: Cli, stack: Stack) -> None:
    rules = '{"all": [{"field": "email", "op": "exists"}]}'
    printed = ok(await cli("segment", "create", "reachable", rules))
    users = await stack.tidings.store.list_users(limit=1000)
    with_email = sorted(u.id for u in users if u.email)
    assert f"segment reachable created: {len(with_email)} users" in printed
    assert "reachable" in ok(await cli("segment", "list"))
    assert ok(await cli("segment", "count", "reachable")).strip() == str(len(with_email))
    page = ok(await cli("segment", "members", "reachable", "--limit", "1"))
    assert page.splitlines() == [with_email[0], f"(more: --after {with_email[0]})"]
    one_line_error(
        await cli(
            "segment", "create", "bad", '{"any": [{"field": "age", "op": "gt", "value": 3}]}'
        ),
        "rules.any[0].field: unknown field 'age'",
    )
    one_line_error(await cli("segment", "create", "bad", "{nope"), "rules: not valid JSON")
    ok(await cli("segment", "delete", "reachable"))
    one_line_error(await cli("segment", "count", "reachable"), "segment 'reachable' not found")
