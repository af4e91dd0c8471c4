"""How fast the analytics and segment queries answer on a large data set, on SQLite and on
PostgreSQL.

At --scale 1: 100,000 users, 1,000,000 notifications over 30 days and about 3,000,000 engagement
events (bench/analytics_data.py), loaded with COPY (PostgreSQL) or executemany (SQLite), then
ANALYZEd on PostgreSQL (SQLite is left without statistics, as in production). Each query runs
--runs times; the median is printed as `query NAME BACKEND MS`, and the median CPU time of
this process as `cpu NAME BACKEND MS` (on SQLite, which runs in the process, the query's whole
cost whatever the machine's load). The target is under 200 ms for each.

    .venv/bin/python bench/analytics.py --scale 0.1
    .venv/bin/python bench/analytics.py --scale 1 --backends postgresql
    .venv/bin/python bench/analytics.py --scale 1 --keep /tmp/analytics-1

With --keep PATH the data set is loaded once and kept: SQLite in the file PATH.sqlite, PostgreSQL
in the schema bench_keep_<name of PATH>; a later run with the same PATH and scale reuses it (the
store's pending migrations are applied to it on open, as in production).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: bench/analytics.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.analytics_data import DAYS, START, Size, load
from bench.send_time import optimal_send_time
from tidings.analytics import Bucket, MetricsFilter, Period, RankBy
from tidings.models import Channel
from tidings.segments import SegmentDefinition
from tidings.store import Store

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
NOW = START + timedelta(days=DAYS + 1)  # "now" for segments' day windows: just after the data

SEGMENTS: dict[str, dict[str, Any]] = {
    "plan_pro": {"field": "attributes.plan", "op": "eq", "value": "pro"},
    "age_over_60": {"field": "attributes.age", "op": "gt", "value": 60},
    "opened_30d": {"field": "engagement.opened", "op": "gte", "value": 1, "days": 30},
    "rate_over_half": {"field": "engagement.rate", "op": "gt", "value": 0.5, "days": 30},
    "email_on_de": {
        "all": [
            {"field": "channels.email", "op": "eq", "value": True},
            {"field": "locale", "op": "eq", "value": "de"},
            {"field": "email", "op": "exists"},
        ]
    },
}


def say(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="1 = 1,000,000 notifications")
    p.add_argument("--runs", type=int, default=5, help="runs per query (median printed)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    p.add_argument("--pg-url", default=PG_URL)
    p.add_argument("--keep", metavar="PATH", help="load once into PATH and reuse it (see above)")
    p.add_argument("--only", metavar="NAMES", help="comma-separated query names (default: all)")
    args = p.parse_args(argv)
    if not 0.0001 <= args.scale <= 1:
        p.error("--scale: between 0.0001 and 1")
    if args.runs < 1:
        p.error("--runs: at least 1")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        p.error("--backends: sqlite, postgresql or both")
    args.backends = backends
    if args.keep is not None:
        args.keep = str(Path(args.keep).resolve())
    return args


LOADED = "bench_loaded"  # one row (scale) once a kept data set is completely loaded


def _kept_schema(keep: str) -> str:
    return "bench_keep_" + re.sub(r"[^a-z0-9_]", "_", Path(keep).name.lower())


@asynccontextmanager
async def open_store(backend: str, pg_url: str, keep: str | None = None) -> AsyncIterator[Store]:
    """A fresh database (a temporary SQLite file, or a PostgreSQL schema dropped afterwards),
    or with `keep` the kept one, created when missing and never dropped."""
    if backend == "sqlite":
        if keep is not None:
            store = await Store.open(f"sqlite+aiosqlite:///{keep}.sqlite")
            try:
                yield store
            finally:
                await store.close()
            return
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as where:
            store = await Store.open(f"sqlite+aiosqlite:///{Path(where) / 'bench.db'}")
            try:
                yield store
            finally:
                await store.close()
        return
    schema = _kept_schema(keep) if keep is not None else f"bench_analytics_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(pg_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    try:
        store = await Store.open(pg_url, connect_args={"server_settings": {"search_path": schema}})
        try:
            yield store
        finally:
            await store.close()
    finally:
        if keep is None:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


async def _loaded(store: Store, scale: float) -> bool:
    """Whether a kept database holds a complete load at `scale`."""
    async with store.engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE IF NOT EXISTS {LOADED} (scale FLOAT NOT NULL)"))
        found = await conn.scalar(
            text(f"SELECT count(*) FROM {LOADED} WHERE scale = :s"), {"s": scale}
        )
        return bool(found == 1)


async def _mark_loaded(store: Store, scale: float) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO {LOADED} (scale) VALUES (:s)"), {"s": scale})


def queries(store: Store, timezone: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The timed calls; `timezone` is the optimal-time user's (u0000042)."""
    day = Period(start=START + timedelta(days=10), end=START + timedelta(days=11))
    week = Period(start=START + timedelta(days=10), end=START + timedelta(days=17))
    anyone = MetricsFilter()
    out: dict[str, Callable[[], Awaitable[Any]]] = {
        "metrics_day": lambda: store.analytics_metrics(day, anyone),
        "metrics_day_hourly": lambda: store.analytics_metrics(day, anyone, Bucket.HOUR),
        "metrics_week_template": lambda: store.analytics_metrics(
            week, MetricsFilter(template_id="t03")
        ),
        "metrics_day_email": lambda: store.analytics_metrics(
            day, MetricsFilter(channel=Channel.EMAIL)
        ),
        "metrics_day_category": lambda: store.analytics_metrics(
            day, MetricsFilter(category="marketing")
        ),
        "metrics_week_experiment": lambda: store.analytics_metrics(
            week, MetricsFilter(experiment_id="exp1", variant="a")
        ),
        "metrics_day_segment": lambda: store.analytics_metrics(
            day, MetricsFilter(segment="plan_pro")
        ),
        "metrics_user": lambda: store.analytics_metrics(
            Period(start=START, end=START + timedelta(days=DAYS)), MetricsFilter(user_id="u0000042")
        ),
        "best_templates_day": lambda: store.best_templates(
            day, anyone, by=RankBy.CLICK_RATE, minimum_sample=10
        ),
        "channels_day": lambda: store.channel_performance(day, anyone),
        "providers_day": lambda: store.provider_performance(day, anyone),
        "profile": lambda: store.engagement_profile("u0000042"),
        # The user's own query, then the population's (cached after the warm-up run, as in
        # use), smoothing and the choice: bench/send_time.py's measure.
        "optimal_send_time": lambda: optimal_send_time(store, "u0000042", timezone, NOW),
    }
    for name in SEGMENTS:
        out[f"segment_count_{name}"] = functools.partial(store.segment_count, name, now=NOW)
        out[f"segment_page_{name}"] = functools.partial(
            store.segment_page, name, "u0001000", 500, now=NOW
        )
    # NOW is a midnight; any real "now" falls inside a day. Windows start at a UTC midnight
    # whatever the time (tidings.store.segments), so this reads the same days as at midnight:
    # kept to show that it costs the same.
    out["segment_count_rate_over_half_noon"] = functools.partial(
        store.segment_count, "rate_over_half", now=NOW + timedelta(hours=12)
    )
    return out


async def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, float]:
    async with open_store(backend, args.pg_url, args.keep) as store:
        if args.keep is not None and await _loaded(store, args.scale):
            say(f"load {backend} kept from an earlier run ({args.keep})")
        else:
            began = time.monotonic()
            written = await load(store.engine, args.scale)
            took = time.monotonic() - began
            say(f"load {backend} {sum(written.values()):,} rows in {took:.0f} s: {written}")
            # PostgreSQL's autovacuum keeps statistics in production; VACUUM too: the facts'
            # backfill rewrote every notification row, and a table half dead tuples is no
            # steady state. SQLite is left without statistics, as Tidings leaves it in
            # production (nothing there runs ANALYZE; see tidings.store.portable.unselective).
            if backend == "postgresql":
                async with store.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text("VACUUM ANALYZE"))
            if args.keep is not None:
                await _mark_loaded(store, args.scale)
        for name, rules in SEGMENTS.items():
            await store.create_segment(SegmentDefinition(name=name, rules=rules))
        figures: dict[str, float] = {}
        user = await store.get_user("u0000042")
        assert user is not None
        for name, query in queries(store, user.timezone).items():
            if args.only and name not in args.only.split(","):
                continue
            await query()  # warm the caches once
            times, cpu = [], []
            for _ in range(args.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                await query()
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            figures[name] = statistics.median(times)
            say(f"query {name} {backend} {figures[name]:.1f}")
            # This process's CPU (every thread): on SQLite the whole query, which the other
            # processes' load does not inflate; on PostgreSQL only the client's share.
            say(f"cpu {name} {backend} {statistics.median(cpu):.1f}")
        return figures


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    size = Size.at(args.scale)
    say(f"scale {args.scale}: {size.users:,} users, {size.notifications:,} notifications")
    return {b: await bench_backend(b, args) for b in args.backends}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    slow = [(b, q, ms) for b, f in figures.items() for q, ms in f.items() if ms >= 200]
    say("over 200 ms: " + (", ".join(f"{q} {b} {ms:.0f}" for b, q, ms in slow) or "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
