"""Delivery under provider faults, against the webhook channel: a real HTTP provider (the stack's
WebhookReceiver, on loopback in this process) behind the same workers and store.

(6) The provider makes a seeded share of recipients gone (410 on every attempt of a webhook-id)
and answers a seeded share of the other requests 503 (drawn per request). Triggered as a burst,
for throughput to the last final status, or open loop at a fixed rate, for latency to the 2xx.
(7) The provider answers every request 429 with `Retry-After: 1` for a window, then recovers; the
notifications start at the window's start and the figure is the window's end to the last 2xx.

Each ends in a verdict read from both sides, the provider's log and the store: every notification
reached a final status, exactly the gone recipients are `failed`, no webhook-id got more than one
2xx. A wait that runs out reports what was not final instead of raising.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.measure import (
    START_CONCURRENCY,
    _deadline,
    _ids,
    _notify,
    fire_open_loop,
    percentile,
)
from bench.meters import PhaseCost, PhaseMeter
from bench.outcomes import Verdict, first_2xx, judge, ok_status, provider_log, wait_final
from bench.stack import HOOK_TEMPLATE_ID, BenchStack
from starter.dev.webhook_receiver import PERMANENT_STATUS, TRANSIENT_STATUS
from tidings.models import Channel
from workflows.policies import RETRY_POLICIES

__all__ = [
    "MAX_ATTEMPTS",
    "PERMANENT_RATE",
    "SEED",
    "TRANSIENT_RATE",
    "FaultResult",
    "RateLimitResult",
    "Verdict",
    "describe_faults",
    "describe_rate_limit",
    "measure_faults",
    "measure_rate_limit",
    "run_faults",
]

TRANSIENT_RATE = 0.05
PERMANENT_RATE = 0.01
SEED = 6
RETRY_AFTER = "1"
MAX_ATTEMPTS = RETRY_POLICIES[Channel.WEBHOOK].maximum_attempts  # 0: no limit


def _allowed() -> str:
    return f"the policy allows {MAX_ATTEMPTS}" if MAX_ATTEMPTS else "the policy sets no limit"


@dataclass
class FaultResult:
    count: int
    transient_rate: float
    permanent_rate: float
    seed: int
    offered_rate: float | None  # None: a burst, as fast as the client allows
    seconds: float  # first notify call to the last final answer (2xx or 410) at the provider
    per_second: float  # final notifications over those seconds: the retry tail is included
    requests: int
    transient_served: int  # 503s
    permanent_served: int  # 410s
    retried: int  # delivered only after at least one 503
    p50_ms: float | None  # notify call to the 2xx, every delivered notification
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    first_attempt: int  # delivered by their first request
    first_attempt_p99_ms: float | None
    verdict: Verdict


@dataclass
class RateLimitResult:
    count: int
    window_seconds: float
    retry_after: str
    start_seconds: float  # until the last notify call returned
    limited: int  # 429s served to these notifications
    refused: int  # notifications refused at least once (the rest first came after recovery)
    retry_gap_p50_s: float | None  # a 429 to that notification's next request: Retry-After
    retry_gap_max_s: float | None  # honoured means about 1 s, the policy's backoff 5 s
    max_requests: int  # most requests one notification took; the policy allows MAX_ATTEMPTS
    early_2xx: int  # 2xx served inside the window: 0 unless the fault leaks
    first_seconds: float | None  # the window's end to the first 2xx
    drain_seconds: float | None  # the window's end to the last 2xx
    total_seconds: float | None  # first notify call to the last 2xx
    verdict: Verdict


async def _fire(
    stack: BenchStack, ids: Sequence[str], rate: float | None
) -> tuple[dict[str, float], float | None]:
    """Trigger every id: as fast as the client allows (rate None) or open loop at `rate`, each
    on time whether or not earlier calls have returned. Returns each notify call's time and the
    rate actually offered (None for a burst)."""
    called: dict[str, float] = {}
    limit = asyncio.Semaphore(START_CONCURRENCY if rate is None else len(ids) or 1)

    async def fire(i: int, nid: str) -> None:
        async with limit:
            called[nid] = await _notify(stack, nid, i, None, HOOK_TEMPLATE_ID)

    if rate is None:
        await asyncio.gather(*(fire(i, nid) for i, nid in enumerate(ids)))
        return called, None
    return called, await fire_open_loop(ids, rate, fire)


def _ms(values: Sequence[float], p: float) -> float | None:
    return percentile(values, p) if values else None


async def measure_faults(
    stack: BenchStack,
    count: int,
    *,
    rate: float | None = None,
    transient: float = TRANSIENT_RATE,
    permanent: float = PERMANENT_RATE,
    seed: int = SEED,
    within: float | None = None,
) -> FaultResult:
    """`count` webhook notifications while the provider injects seeded faults; a burst when
    `rate` is None, else open loop at `rate`. Waits (at most `within` seconds) for every one
    to be final in the store."""
    if count < 1:
        raise ValueError(f"count: must be at least 1, got {count}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate: must be positive, got {rate}")
    prefix, ids = _ids("fault", count)
    stack.receiver.fault_rates(transient=transient, permanent=permanent, seed=seed)
    try:
        called, offered = await _fire(stack, ids, rate)
        statuses, waited, timed_out = await wait_final(
            stack, prefix, ids, _deadline(count) if within is None else within
        )
        gone = stack.receiver.gone
    finally:
        stack.receiver.fault_rates()  # off: the other measurements get a healthy provider
    log = provider_log(stack, ids)
    verdict = judge(ids, statuses, log, gone, waited, timed_out)
    latencies: list[float] = []
    first_attempt: list[float] = []
    ends: list[float] = []
    for nid, entries in log.items():
        delivered_at = first_2xx(entries)
        if delivered_at is not None:
            latencies.append((delivered_at - called[nid]) * 1000)
            ends.append(delivered_at)
            if ok_status(entries[0][1]):
                first_attempt.append(latencies[-1])
        elif entries and entries[-1][1] == PERMANENT_STATUS:
            ends.append(entries[-1][0])
    latencies.sort()
    first_attempt.sort()
    seconds = max(ends, default=time.time()) - min(called.values())
    statuses_served = [s for entries in log.values() for _, s in entries]
    return FaultResult(
        count=count,
        transient_rate=transient,
        permanent_rate=permanent,
        seed=seed,
        offered_rate=offered,
        seconds=seconds,
        per_second=(verdict.delivered + verdict.failed) / seconds if seconds > 0 else 0.0,
        requests=len(statuses_served),
        transient_served=statuses_served.count(TRANSIENT_STATUS),
        permanent_served=statuses_served.count(PERMANENT_STATUS),
        retried=len(latencies) - len(first_attempt),
        p50_ms=_ms(latencies, 50),
        p95_ms=_ms(latencies, 95),
        p99_ms=_ms(latencies, 99),
        max_ms=latencies[-1] if latencies else None,
        first_attempt=len(first_attempt),
        first_attempt_p99_ms=_ms(first_attempt, 99),
        verdict=verdict,
    )


async def measure_rate_limit(
    stack: BenchStack,
    count: int,
    window: float,
    *,
    retry_after: str = RETRY_AFTER,
    within: float | None = None,
) -> RateLimitResult:
    """The provider answers 429 + Retry-After to everything for `window` seconds; `count`
    webhook notifications are started as fast as possible at the window's start. Waits (at
    most `within` seconds after the window) for every one to be final in the store."""
    if count < 1:
        raise ValueError(f"count: must be at least 1, got {count}")
    prefix, ids = _ids("limited", count)
    recovered = stack.receiver.rate_limit_for(window, retry_after=retry_after).timestamp()
    began = time.time()
    called, _ = await _fire(stack, ids, None)
    start_seconds = time.time() - began
    statuses, waited, timed_out = await wait_final(
        stack, prefix, ids, window + (_deadline(count) if within is None else within)
    )
    log = provider_log(stack, ids)
    verdict = judge(ids, statuses, log, (), waited, timed_out)
    delivered = sorted(at for entries in log.values() if (at := first_2xx(entries)) is not None)
    gaps = sorted(
        after[0] - before[0]
        for entries in log.values()
        for before, after in itertools.pairwise(entries)
        if before[1] == 429
    )
    return RateLimitResult(
        count=count,
        window_seconds=window,
        retry_after=retry_after,
        start_seconds=start_seconds,
        limited=sum(1 for entries in log.values() for _, s in entries if s == 429),
        refused=sum(1 for entries in log.values() if any(s == 429 for _, s in entries)),
        retry_gap_p50_s=percentile(gaps, 50) if gaps else None,
        retry_gap_max_s=gaps[-1] if gaps else None,
        max_requests=max((len(entries) for entries in log.values()), default=0),
        early_2xx=sum(1 for at in delivered if at < recovered),
        first_seconds=delivered[0] - recovered if delivered else None,
        drain_seconds=delivered[-1] - recovered if delivered else None,
        total_seconds=delivered[-1] - min(called.values()) if delivered else None,
        verdict=verdict,
    )


async def run_faults(
    stack: BenchStack,
    args: argparse.Namespace,
    rate: float,
    phases: dict[str, PhaseCost],
    say: Callable[[str], None],
) -> tuple[FaultResult, FaultResult, RateLimitResult]:
    """throughput.py's (6), as a burst of --count and open loop at `rate` ((3)'s) for
    --latency-seconds, then its (7); each phase's cost goes into `phases`."""
    rates = {"transient": args.transient_rate, "permanent": args.permanent_rate}
    meter = await PhaseMeter.start(stack)
    burst = await measure_faults(stack, args.count, seed=args.fault_seed, **rates)
    phases["faults_burst"] = await meter.done()
    say(f"(6) webhook under faults, burst of {burst.count}: {describe_faults(burst)}")
    say(f"      {burst.verdict.line()}")
    await asyncio.sleep(args.settle_seconds)

    count = max(2, round(rate * args.latency_seconds))
    meter = await PhaseMeter.start(stack)
    steady = await measure_faults(stack, count, rate=rate, seed=args.fault_seed + 1, **rates)
    phases["faults_open_loop"] = await meter.done()
    say(
        f"(6) webhook under faults, open loop at {steady.offered_rate or rate:.1f}/s"
        f" ({steady.count}): {describe_faults(steady)}"
    )
    say(f"      {steady.verdict.line()}")
    await asyncio.sleep(args.settle_seconds)

    meter = await PhaseMeter.start(stack)
    limited = await measure_rate_limit(stack, args.rate_limit_count, args.rate_limit_seconds)
    phases["rate_limit"] = await meter.done()
    say(
        f"(7) webhook 429 for {limited.window_seconds:g} s, {limited.count} notifications:"
        f" {describe_rate_limit(limited)}"
    )
    say(f"      {limited.verdict.line()}")
    await asyncio.sleep(args.settle_seconds)
    return burst, steady, limited


def _f(value: float | None, unit: str = " ms", digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def describe_faults(r: FaultResult) -> str:
    """The figures of one (6) run, in one line."""
    return (
        f"{r.per_second:.1f}/s to the last final status ({r.count} in {r.seconds:.1f} s);"
        f" to the 2xx p50 {_f(r.p50_ms)}, p95 {_f(r.p95_ms)}, p99 {_f(r.p99_ms)};"
        f" first-attempt successes ({r.first_attempt}) p99 {_f(r.first_attempt_p99_ms)};"
        f" {r.verdict.delivered} delivered ({r.retried} after a 503), {r.verdict.failed} failed;"
        f" served {r.transient_served} 503s and {r.permanent_served} 410s in {r.requests} requests"
    )


def describe_rate_limit(r: RateLimitResult) -> str:
    """The figures of one (7) run, in one line."""
    return (
        f"drained {_f(r.drain_seconds, ' s', 2)} after recovery (first 2xx"
        f" {_f(r.first_seconds, ' s', 2)} after); {_f(r.total_seconds, ' s', 1)} from the first"
        f" notify call to the last 2xx; {r.limited} 429s served to {r.refused} notifications,"
        f" next request after a 429: p50 {_f(r.retry_gap_p50_s, ' s', 2)},"
        f" max {_f(r.retry_gap_max_s, ' s', 2)}; at most {r.max_requests} requests for one"
        f" notification ({_allowed()});"
        f" {r.verdict.delivered} delivered, {r.verdict.failed} failed, {r.early_2xx} 2xx inside"
        " the window"
    )
