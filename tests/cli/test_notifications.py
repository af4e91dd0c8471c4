"""`tidings send|send-bulk|status|cancel|reschedule|engage` against the real stack."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.cli.helpers import UI_URL, Cli, ok, one_line_error
from tests.support import Stack
from tidings.models import Channel, DeliveryStatus, EngagementType, NotificationStatus

WELCOME = ("-d", "app_name=MyApp", "-d", "user_name=John")


def notification_id(output: str) -> str:
    """From the "started" table (id, then its Web UI link) or a notification's detail view."""
    match = re.search(r"^│ (\S+)\s+│ http", output, re.M) or re.search(
        r"^notification\s+(\S+)", output, re.M
    )
    assert match, output
    return match.group(1)


def channel_row(output: str, channel: str) -> str:
    rows = [line for line in output.splitlines() if re.match(rf"^\W*{channel}\s", line)]
    assert len(rows) == 1, output
    return rows[0]


async def test_send_then_status_shows_every_channel(cli: Cli, stack: Stack) -> None:
    sent = ok(await cli("send", "user_001", "welcome", *WELCOME))
    nid = notification_id(sent)
    assert f"{UI_URL}/namespaces/default/workflows/notification%2F{nid}" in sent

    result = await stack.tidings.wait_sent(nid)
    assert result.status is NotificationStatus.SENT
    status = ok(await cli("status", nid))

    assert "sent" in channel_row(status, "email")
    assert "delivered" in channel_row(status, "in_app")
    assert "suppressed" in channel_row(status, "push")
    assert "user has no registered device" in channel_row(status, "push")
    assert f"{UI_URL}/namespaces/default/workflows/notification%2F{nid}" in status
    assert stack.sink.messages[-1].subject == "Welcome to MyApp, John!"


async def test_send_wait_prints_the_outcome(cli: Cli) -> None:
    out = ok(await cli("send", "user_002", "order_confirmation", "--wait",
                       "-d", '{"order_id": "ORD-7", "amount": "5.00"}',
                       "-d", "delivery_date=tomorrow", "--channel", "email"))  # fmt: skip

    assert "sent" in channel_row(out, "email")
    assert "priority      high" in out  # the template's default
    assert "sms" not in out  # only the channel asked for


async def test_sending_again_with_the_same_key_is_the_same_notification(
    cli: Cli, stack: Stack
) -> None:
    data = ("-d", '{"app_name": "MyApp"}', "-d", 'user_name:="John"')
    args = ("send", "user_001", "welcome", *data, "--idempotency-key", "signup-42")
    first_out = ok(await cli(*args))
    second_out = ok(await cli(*args))

    assert notification_id(first_out) == notification_id(second_out) == "signup-42"
    assert "1 notification(s) started" in first_out
    assert "already existed" in second_out and "started" not in second_out
    await stack.tidings.wait_sent("signup-42")
    assert [m.subject for m in stack.sink.messages] == ["Welcome to MyApp, John!"]

    other = ("send", "user_001", "welcome", *data, "--priority", "high")
    error = one_line_error(
        await cli(*other, "--idempotency-key", "signup-42"), "idempotency_key", "signup-42"
    )
    assert "different request" in error


async def test_send_unknown_template(cli: Cli) -> None:
    one_line_error(await cli("send", "user_001", "nope"), "template_id", "no template 'nope'")


async def test_send_unknown_user(cli: Cli) -> None:
    one_line_error(await cli("send", "ghost", "welcome", *WELCOME), "user_id", "ghost")


async def test_send_data_that_does_not_render(cli: Cli) -> None:
    one_line_error(
        await cli("send", "user_001", "welcome", "-d", "app_name=MyApp"), "data", "user_name"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"app_name": "MyApp",', "--data: not valid JSON"),
        ("{'app_name': 'MyApp'}", "--data: not valid JSON"),
        ("app_name", "--data: expected a JSON object, key=value"),
        ("count:=nope", "--data count: not valid JSON"),
    ],
)
async def test_send_bad_data(cli: Cli, data: str, expected: str) -> None:
    one_line_error(await cli("send", "user_001", "welcome", "-d", data), expected)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--at", "tomorrow", "--at: 'tomorrow' is not a time"),
        ("--at", "2030-01-01T09:00:00", "--at: '2030-01-01T09:00:00' has no UTC offset"),
        ("--expires", "+5x", "--expires: '+5x' is not a time"),
        ("--expires", "2020-01-01T00:00:00Z", "expires_at: 2020-01-01T00:00:00+00:00 is in"),
        ("--at", "+99999999d", "--at: '+99999999d' is too far ahead"),
        ("--at", "+400d", "scheduled_at: "),
        ("--at", "9999-12-31T23:00:00-12:00", "is out of range"),
        ("--at", "0001-01-01T00:00:00+14:00", "is out of range"),
        ("--expires", "+2y", "--expires: '+2y' is not a time"),
    ],
)  # fmt: skip
async def test_send_bad_dates(cli: Cli, option: str, value: str, expected: str) -> None:
    one_line_error(await cli("send", "user_001", "welcome", *WELCOME, option, value), expected)


async def test_reschedule_then_cancel(cli: Cli, stack: Stack) -> None:
    nid = notification_id(ok(await cli("send", "user_001", "welcome", *WELCOME, "--at", "+2h")))
    waiting = await stack.tidings.status(nid)
    assert waiting.status is NotificationStatus.SCHEDULED

    target = datetime.now(UTC) + timedelta(hours=5)
    ok(await cli("reschedule", nid, target.isoformat()))
    moved = await stack.tidings.status(nid)
    assert moved.send_at is not None
    assert abs(moved.send_at - target) < timedelta(seconds=1)

    cancelled = ok(await cli("cancel", nid, "--reason", "changed my mind"))
    assert "cancelled" in cancelled and "changed my mind" in cancelled
    assert (await stack.tidings.status(nid)).status is NotificationStatus.CANCELLED

    one_line_error(await cli("cancel", nid), nid)
    one_line_error(await cli("reschedule", nid, "+1d"), nid)
    one_line_error(await cli("reschedule", nid, "2020-01-01T00:00:00+00:00"), "in the past")
    one_line_error(await cli("cancel", "never-sent"), "'never-sent' not found")


async def test_engage_records_on_a_sent_notification(cli: Cli, stack: Stack) -> None:
    nid = notification_id(ok(await cli("send", "user_001", "welcome", *WELCOME, "--wait")))

    assert "opened recorded" in ok(await cli("engage", nid, "opened", "--channel", "email"))

    async def engaged() -> list[EngagementType]:
        return [e.type for e in (await stack.tidings.status(nid)).engagement]

    for _ in range(50):
        if await engaged():
            break
        await asyncio.sleep(0.1)
    assert await engaged() == [EngagementType.OPENED]
    assert "opened" in ok(await cli("status", nid)).split("engagement")[-1]


async def test_engage_before_delivery_is_refused(cli: Cli) -> None:
    nid = notification_id(ok(await cli("send", "user_001", "welcome", *WELCOME, "--at", "+1h")))

    one_line_error(await cli("engage", nid, "clicked"), "accepted after delivery")


async def test_event_records_once_and_says_so(cli: Cli, stack: Stack) -> None:
    nid = notification_id(ok(await cli("send", "user_001", "welcome", *WELCOME, "--wait")))
    for _ in range(50):  # events are judged by the database, which the run writes just after
        stored = await stack.store.get_notification(nid)
        if stored is not None and stored.status is NotificationStatus.SENT:
            break
        await asyncio.sleep(0.1)

    args = ("event", nid, "converted", "--value", "19.5", "--currency", "EUR")
    assert "converted recorded" in ok(await cli(*args))
    assert "converted already recorded" in ok(await cli(*args))
    stored = await stack.store.get_notification(nid)
    assert stored is not None
    assert [e.metadata for e in stored.engagement] == [{"value": 19.5, "currency": "EUR"}]
    one_line_error(await cli("event", nid, "opened", "--value", "1"), "converted")


async def test_send_bulk_waits_for_every_user(cli: Cli, stack: Stack) -> None:
    out = ok(
        await cli("send-bulk", "welcome", "user_001", "user_002", *WELCOME, "--channel", "email",
                  "--idempotency-key", "launch", "--wait")
    )  # fmt: skip

    assert "2 sent" in out
    for user in ("user_001", "user_002"):
        result = await stack.tidings.status(f"launch.{user}")
        assert [(c.channel, c.status) for c in result.channels] == [
            (Channel.EMAIL, DeliveryStatus.SENT)
        ]


async def test_send_bulk_atomic_checks_every_user_before_starting_any(
    cli: Cli, stack: Stack
) -> None:
    result = await cli("send-bulk", "welcome", "user_001", "ghost", *WELCOME,
                       "--idempotency-key", "partial", "--atomic")  # fmt: skip

    one_line_error(result, "user_ids[1]", "no user 'ghost'", "nothing was started")
    one_line_error(await cli("status", "partial.user_001"), "not found")


async def test_send_bulk_starts_the_valid_and_lists_the_rejected(cli: Cli, stack: Stack) -> None:
    result = await cli("send-bulk", "welcome", "user_001", "ghost", *WELCOME,
                       "--channel", "in_app", "--idempotency-key", "mixed")  # fmt: skip

    assert result.exit_code == 1, result.output  # not everything started
    assert "1 not started" in result.stdout and "no user 'ghost'" in result.stdout
    assert "user_ids[1]" in result.stdout
    assert "1 notification(s) started" in result.stdout
    await stack.tidings.wait_sent("mixed.user_001")


async def test_a_large_bulk_is_accepted_then_started_by_its_fan_out(cli: Cli, stack: Stack) -> None:
    big = Cli({**cli.env, "TIDINGS_BULK_INLINE_MAX": "1"})  # 2 recipients: above the inline limit
    out = ok(await big("send-bulk", "welcome", "user_001", "user_002", *WELCOME,
                       "--channel", "email", "--idempotency-key", "big"))  # fmt: skip

    assert "2 accepted, their runs start shortly" in out and "started" not in out.split("\n")[0]
    match = re.search(r"tidings bulk-status (\S+)`", out)
    assert match, out
    for user in ("user_001", "user_002"):
        await stack.tidings.wait_sent(f"big.{user}")
    for _ in range(100):  # the fan-out counts a page once all of it has started
        shown = ok(await cli("bulk-status", match.group(1)))
        if "2 of 2" in shown:
            break
        await asyncio.sleep(0.1)
    assert "2 of 2" in shown and "welcome" in shown
    one_line_error(await cli("bulk-status", "no-such-bulk"), "not found")
