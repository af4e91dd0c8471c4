"""Send-time optimisation benchmark: how long choosing one user's optimal send time takes when
that user has a year of history and the population has recent history too.

    .venv/bin/python bench/send_time.py                        # SQLite, 2,000 other users
    .venv/bin/python bench/send_time.py --users 200 --runs 5   # a quick look
    .venv/bin/python bench/send_time.py --postgres postgresql+asyncpg://127.0.0.1:5432/test

Prints `query NAME BACKEND MS` lines (median of --runs):
  user_histogram        the user's opened/clicked events per UTC hour (SQL, 90 days)
  population_histogram  everyone's, per (timezone, UTC hour) in SQL, then in local hours
                        (cached for an hour in use; this is the uncached refresh)
  optimal_send_time     what plan_delivery adds for send_at="optimal": the user's query, the
                        cached population, local histograms, smoothing and the choice
Figures only; nothing here passes or fails on them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: bench/send_time.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from tidings import eventloop, send_time
from tidings.store import Store
from tidings.store.tables import Base, DeliveryRow, NotificationRow, UserRow

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Tokyo", "UTC"]
SUBJECT = "subject"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=2_000, help="other users (default 2,000)")
    p.add_argument("--days", type=int, default=365, help="the subject's history in days")
    p.add_argument("--per-day", type=int, default=3, help="the subject's notifications per day")
    p.add_argument("--runs", type=int, default=20, help="timed runs per query (median)")
    p.add_argument("--postgres", default=None, help="also run on this PostgreSQL URL")
    args = p.parse_args(argv)
    if args.users < 1 or args.days < 1 or args.per_day < 1 or args.runs < 1:
        p.error("--users, --days, --per-day and --runs must be at least 1")
    return args


def _rows(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The subject: a year of notifications, most opened around 20:00 Berlin. Everyone else:
    15 notifications in the last 90 days, opened at random hours."""
    rng = random.Random(7)
    users = [{"id": SUBJECT, "timezone": "Europe/Berlin"}] + [
        {"id": f"u{i}", "timezone": ZONES[i % len(ZONES)]} for i in range(args.users)
    ]
    notifications: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def add(user_id: str, at: datetime, opened_after: timedelta | None) -> None:
        nid = uuid.uuid4().hex
        notifications.append({"id": nid, "user_id": user_id, "at": at})
        deliveries.append({"notification_id": nid, "at": at})
        if opened_after is not None:
            events.append({"notification_id": nid, "type": "opened", "at": at + opened_after})
            if rng.random() < 0.3:
                clicked = at + opened_after + timedelta(minutes=2)
                events.append({"notification_id": nid, "type": "clicked", "at": clicked})

    for day in range(args.days):
        for _ in range(args.per_day):
            at = NOW - timedelta(days=day, hours=rng.uniform(0, 24))
            opened = rng.random() < 0.7
            add(SUBJECT, at, timedelta(minutes=rng.uniform(1, 300)) if opened else None)
    for user in users[1:]:
        for _ in range(15):
            at = NOW - timedelta(days=rng.uniform(0, 90))
            opened = rng.random() < 0.5
            add(user["id"], at, timedelta(minutes=rng.uniform(1, 600)) if opened else None)
    return {"users": users, "notifications": notifications, "deliveries": deliveries,
            "events": events}  # fmt: skip


async def _load(store: Store, rows: dict[str, list[dict[str, Any]]]) -> None:
    created = NOW
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(UserRow),
            [
                {"id": u["id"], "timezone": u["timezone"], "locale": "en", "attributes": {},
                 "created_at": created, "updated_at": created}
                for u in rows["users"]
            ],
        )  # fmt: skip
        await conn.execute(
            insert(NotificationRow),
            [
                {"id": n["id"], "user_id": n["user_id"], "template_id": "digest",
                 "template_version": 1, "priority": "medium", "status": "sent",
                 "send_at": n["at"], "created_at": n["at"], "updated_at": n["at"]}
                for n in rows["notifications"]
            ],
        )  # fmt: skip
        await conn.execute(
            insert(DeliveryRow),
            [
                {"notification_id": d["notification_id"], "channel": "email", "status": "sent",
                 "attempts": 1, "at": d["at"], "updated_at": d["at"]}
                for d in rows["deliveries"]
            ],
        )  # fmt: skip
        await conn.execute(
            insert(Base.metadata.tables["engagement_events"]),  # its column is `metadata`
            [
                {"notification_id": e["notification_id"], "type": e["type"], "channel": "email",
                 "at": e["at"], "dedupe_key": f"{e['type']}:email", "metadata": {}}
                for e in rows["events"]
            ],
        )  # fmt: skip


async def _median_ms(runs: int, fn: Callable[[], Awaitable[object]]) -> float:
    await fn()  # warm: statement caches, connection
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


async def optimal_send_time(store: Store, user_id: str, timezone: str, now: datetime) -> object:
    """What plan_delivery adds for send_at="optimal" (also timed by bench/analytics.py): the
    user's query, the population (cached once computed), local histograms, smoothing and the
    choice within 24 hours."""
    since = now - send_time.HISTORY
    own = await store.engagement_hours(user_id, since=since)
    model = send_time.smooth(
        send_time.local_histogram(own, timezone), await store.population_histogram(since=since)
    )
    return send_time.choose(
        model, timezone=timezone, start=now, latest=now + timedelta(hours=24), user_id=user_id
    )


async def measure(store: Store, backend: str, args: argparse.Namespace) -> dict[str, float]:
    since = NOW - send_time.HISTORY

    async def user() -> object:
        return await store.engagement_hours(SUBJECT, since=since)

    async def population() -> object:
        store._population = None  # uncached: the cost of the hourly refresh
        return await store.population_histogram(since=since)

    async def optimal() -> object:
        return await optimal_send_time(store, SUBJECT, "Europe/Berlin", NOW)

    figures = {
        "user_histogram": await _median_ms(args.runs, user),
        "population_histogram": await _median_ms(args.runs, population),
        "optimal_send_time": await _median_ms(args.runs, optimal),
    }
    for name, ms in figures.items():
        print(f"query {name} {backend} {ms:.2f}", flush=True)
    return figures


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rows = _rows(args)
    print(
        f"# subject: {args.days} days x {args.per_day}/day, "
        f"{sum(1 for n in rows['notifications'] if n['user_id'] == SUBJECT)} notifications; "
        f"{args.users} other users; {len(rows['events'])} engagement events",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await _load(store, rows)
            results["sqlite"] = await measure(store, "sqlite", args)
        finally:
            await store.close()
    if args.postgres:
        schema = f"bench_send_time_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            store = await Store.open(
                args.postgres, connect_args={"server_settings": {"search_path": schema}}
            )
            try:
                await _load(store, rows)
                async with store.engine.begin() as conn:
                    await conn.execute(text("ANALYZE"))
                results["postgresql"] = await measure(store, "postgresql", args)
            finally:
                await store.close()
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()
    return results


if __name__ == "__main__":
    eventloop.run(run(parse_args()))
