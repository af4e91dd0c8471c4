"""The fault measurements at their smallest sizes, and the receiver's fault modes they rely on:
every notification ends final, exactly the recipients the provider made gone are `failed`, no
webhook-id gets two 2xx. Counts and statuses only; nothing here is about speed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from bench.faults import FaultResult, Verdict, measure_faults, measure_rate_limit
from bench.report import fault_rows, render_markdown
from bench.stack import BenchStack, bench_stack
from bench.throughput import parse_args
from starter.dev.webhook_receiver import WebhookReceiver
from tests.bench.test_bench_smoke import _report

# With seed 0, of 20 recipients the permanent stream makes 5 gone, and the transient stream
# answers 503 to 3 of the requests the other 15 need: both kinds certainly occur, whatever
# order the requests arrive in, and no send needs more than 4 attempts.
SMALL_GONE, SMALL_503S = 5, 3


async def _post(http: httpx.AsyncClient, receiver: WebhookReceiver, webhook_id: str) -> int:
    response = await http.post(f"{receiver.url}/hook", headers={"webhook-id": webhook_id})
    return response.status_code


async def _statuses(seed: int, ids: list[str]) -> list[int]:
    async with WebhookReceiver() as receiver, httpx.AsyncClient() as http:
        receiver.fault_rates(transient=0.3, permanent=0.3, seed=seed)
        return [await _post(http, receiver, webhook_id) for webhook_id in ids]


async def test_fault_rates_are_seeded_and_a_gone_recipient_stays_gone() -> None:
    ids = [f"n{i % 12}" for i in range(48)]  # every recipient asked four times
    first = await _statuses(7, ids)
    assert first == await _statuses(7, ids)
    assert first != await _statuses(8, ids)
    by_id: dict[str, set[int]] = {}
    for webhook_id, status in zip(ids, first, strict=True):
        by_id.setdefault(webhook_id, set()).add(status)
    gone = {webhook_id for webhook_id, seen in by_id.items() if 410 in seen}
    assert gone and all(by_id[w] == {410} for w in gone)  # 410 on every attempt, nothing else
    alive = [s for w, s in zip(ids, first, strict=True) if w not in gone]
    assert set(alive) == {200, 503}  # the transient kind is drawn per request


async def test_fault_modes_record_answers_and_scripts_come_first() -> None:
    async with WebhookReceiver() as receiver, httpx.AsyncClient() as http:
        receiver.fault_rates(permanent=1.0, seed=1)
        receiver.fail_next(status=500)
        assert [await _post(http, receiver, "a") for _ in range(3)] == [500, 410, 410]
        assert receiver.gone == {"a"}
        assert [r.status for r in receiver.received] == [500, 410, 410]
        receiver.fault_rates()  # off
        assert await _post(http, receiver, "a") == 200 and receiver.gone == frozenset()
        receiver.clear()
        assert receiver.received == [] and await _post(http, receiver, "b") == 200


async def test_rate_limit_window_answers_429_then_recovers() -> None:
    async with WebhookReceiver() as receiver, httpx.AsyncClient() as http:
        until = receiver.rate_limit_for(0.5, retry_after="3")
        response = await http.post(f"{receiver.url}/hook")
        assert (response.status_code, response.headers["retry-after"]) == (429, "3")
        await asyncio.sleep(0.6)
        assert await _post(http, receiver, "x") == 200
        assert receiver.received[0].received_at < until <= receiver.received[1].received_at


def test_fault_knobs_refuse_nonsense() -> None:
    receiver = WebhookReceiver()
    with pytest.raises(ValueError, match="transient"):
        receiver.fault_rates(transient=1.5)
    with pytest.raises(ValueError, match="permanent"):
        receiver.fault_rates(permanent=-0.1)
    with pytest.raises(ValueError, match="seconds"):
        receiver.rate_limit_for(0)


def test_faults_flag_defaults_on_and_can_be_skipped() -> None:
    assert parse_args([]).faults and parse_args(["--quick"]).faults
    assert not parse_args(["--no-faults"]).faults
    quick = parse_args(["--quick"])
    assert quick.rate_limit_count < parse_args([]).rate_limit_count
    for bad in (["--transient-rate", "2"], ["--rate-limit-seconds", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack() -> AsyncIterator[BenchStack]:
    async with bench_stack(users=3) as s:
        yield s


@pytest.mark.integration
async def test_faults_end_every_notification_and_fail_exactly_the_gone(
    stack: BenchStack,
) -> None:
    result = await measure_faults(stack, 20, transient=0.3, permanent=0.2, seed=0)
    v = result.verdict
    assert v.ok, v.line()
    assert (v.expected, v.not_final, v.duplicated, v.timed_out) == (20, 0, 0, False)
    assert (v.gone, v.failed, v.delivered) == (SMALL_GONE, SMALL_GONE, 20 - SMALL_GONE)
    assert (result.permanent_served, result.transient_served) == (SMALL_GONE, SMALL_503S)
    assert result.requests == 20 + SMALL_503S  # a gone recipient is asked once, never again
    assert 1 <= result.retried <= SMALL_503S
    assert result.first_attempt + result.retried == v.delivered
    assert result.p50_ms is not None and result.p99_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms
    assert stack.receiver.gone == frozenset()  # the faults are off for whatever runs next


@pytest.mark.integration
async def test_faults_open_loop_reports_the_offered_rate(stack: BenchStack) -> None:
    result = await measure_faults(stack, 4, rate=8.0, transient=0.0, permanent=0.0)
    assert result.verdict.ok, result.verdict.line()
    assert result.offered_rate is not None and result.offered_rate > 0
    assert (result.first_attempt, result.retried, result.requests) == (4, 0, 4)


@pytest.mark.integration
async def test_rate_limit_window_drains_without_loss_or_duplicates(stack: BenchStack) -> None:
    result = await measure_rate_limit(stack, 20, 2.0)
    v = result.verdict
    assert v.ok, v.line()
    assert (v.delivered, v.failed, v.not_final, v.duplicated) == (20, 0, 0, 0)
    assert 1 <= result.refused <= 20 and result.limited >= result.refused
    assert result.early_2xx == 0
    assert result.max_requests >= 2
    # Retry-After: 1 is honoured: no notification asks again sooner.
    assert result.retry_gap_p50_s is not None and result.retry_gap_p50_s >= 0.95
    assert result.drain_seconds is not None and result.first_seconds is not None
    assert 0 < result.first_seconds <= result.drain_seconds


@pytest.mark.integration
async def test_a_stuck_notification_is_reported_not_waited_for(stack: BenchStack) -> None:
    # Every request 503 with a wait shorter than the first 5 s backoff: nothing can finish.
    result = await measure_faults(stack, 2, transient=1.0, within=1.0)
    v = result.verdict
    assert not v.ok and v.timed_out and v.not_final == 2
    assert "verdict NOT OK" in v.line() and "2 lost or stuck" in v.line()


def _fault_result(verdict: Verdict) -> FaultResult:
    return FaultResult(
        count=10,
        transient_rate=0.05,
        permanent_rate=0.01,
        seed=6,
        offered_rate=None,
        seconds=2.0,
        per_second=5.0,
        requests=11,
        transient_served=1,
        permanent_served=1,
        retried=1,
        p50_ms=100.0,
        p95_ms=5100.0,
        p99_ms=5100.0,
        max_ms=5100.0,
        first_attempt=8,
        first_attempt_p99_ms=150.0,
        verdict=verdict,
    )


def test_verdicts_and_fault_rows_render() -> None:
    good = Verdict(10, 9, 1, 0, 1, 0, 0, 0, 0, 1.0, False)
    assert good.ok and "failed = exactly the 1 gone" in good.line()
    duplicated = Verdict(10, 9, 1, 0, 1, 0, 0, 1, 0, 1.0, False)
    assert not duplicated.ok and "1 duplicated" in duplicated.line()
    wrong = Verdict(10, 9, 1, 0, 1, 1, 1, 0, 0, 1.0, False)
    assert not wrong.ok and "1 failed though not gone" in wrong.line()
    report = _report(60.0, 100.0, 1.0)
    assert fault_rows(report) == [] and "| (6)" not in render_markdown(report)
    report = dataclasses.replace(
        report, faults_burst=_fault_result(good), faults_open_loop=_fault_result(wrong)
    )
    rows = fault_rows(report)
    assert len(rows) == 2 and all(row.startswith("| (6) webhook") for row in rows)
    assert rows[0].endswith(": OK |") and rows[1].endswith(": NOT OK |")
    assert "first-attempt successes (8) p99 150 ms" in rows[0]
    assert "first backoff 5 s" in render_markdown(report)
