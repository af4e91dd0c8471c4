"""A seeded synthetic data set for analytics: users, templates, preferences, notifications,
deliveries and engagement events, as rows for Core bulk inserts, in chunks.

At scale 1: 100,000 users, 1,000,000 notifications over 30 days, about 3,000,000 events. The
events include repeats of a type on one notification (several opens, each with its own event
id), events without a channel, late events (days after the send), events on notifications that
never went out, and conversions with a value in one of three currencies. The analytics tests
count the same rows by hand (tests/store/test_analytics.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Table, delete, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tidings.store.facts import (
    recount_conversions,
    recount_sent_days,
    recount_user_engagement,
    refresh_delivery_facts,
    refresh_facts,
)
from tidings.store.tables import Base, ConversionRow, UserEngagementRow, UserSentDayRow

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Tokyo"]
LOCALES = ["en", "de", "fr", "en-GB"]
PLANS = ["free", "pro", "team"]
CHANNELS = ["email", "push", "sms"]
CURRENCIES = ["EUR", "USD", "GBP"]
TEMPLATES = 20

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Size:
    users: int
    notifications: int

    @classmethod
    def at(cls, scale: float) -> Size:
        return cls(users=max(10, round(100_000 * scale)), notifications=max(50, round(1e6 * scale)))


def _template_rows(now: datetime) -> Rows:
    rows = []
    for i in range(TEMPLATES):
        for version in (1, 2) if i % 4 == 0 else (1,):
            rows.append(
                {
                    "id": f"t{i:02d}",
                    "version": version,
                    "name": f"template {i}",
                    "category": "marketing" if i % 2 == 0 else "transactional",
                    "channels": CHANNELS,
                    "default_priority": "medium",
                    "content": {"subject": "hi", "text": "hello"},
                    "locales": {},
                    "sample_data": {},
                    "fallback": [],
                    "tracking": True,
                    "created_at": now,
                }
            )
    return rows


def _user(rng: random.Random, i: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {"plan": rng.choice(PLANS), "age": rng.randint(18, 80)}
    if rng.random() < 0.3:
        attributes["vip"] = rng.random() < 0.5
    if rng.random() < 0.1:
        attributes["age"] = "unknown"  # a string where most users have a number
    created = START - timedelta(days=rng.uniform(0, 400))
    return {
        "id": f"u{i:07d}",
        "email": f"user{i}@example.com" if rng.random() < 0.8 else None,
        "phone": "+14155550100" if rng.random() < 0.4 else None,
        "timezone": rng.choice(TIMEZONES),
        "locale": rng.choice(LOCALES),
        "webhook_url": None,
        "webhook_urls": [],
        "slack_webhook_url": None,
        "slack_user_id": None,
        "attributes": attributes,
        "created_at": created,
        "updated_at": created,
    }


def _preferences(rng: random.Random, user_id: str, now: datetime) -> dict[str, Any] | None:
    if rng.random() >= 0.2:
        return None
    switches = {rng.choice(CHANNELS): False}
    if rng.random() < 0.3:
        switches["push"] = True
    return {
        "user_id": user_id,
        "channels": switches,
        "categories": {},
        "templates": {},
        "quiet_hours": None,
        "updated_at": now,
    }


_STATUSES = ["delivered"] * 50 + ["sent"] * 30 + ["failed"] * 15 + ["suppressed"] * 5
_EVENT_TYPES = ["opened"] * 12 + ["clicked"] * 5 + ["converted"] * 2 + ["dismissed"]


def _notification(
    rng: random.Random, i: int, users: int, out: dict[str, Rows], now: datetime
) -> None:
    created = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
    template = rng.randrange(TEMPLATES)
    nid = f"n{i:08d}"
    channels = rng.sample(CHANNELS, rng.choice([1, 1, 2, 3]))
    deliveries: Rows = []
    for channel in channels:
        status = rng.choice(_STATUSES)
        at = created + timedelta(seconds=rng.uniform(1, 120))
        deliveries.append(
            {
                "notification_id": nid,
                "channel": channel,
                "status": status,
                "reason": "provider refused" if status == "failed" else None,
                "target": None,
                "provider_message_id": None,
                "attempts": rng.choice([1, 1, 1, 2, 3]) if status != "suppressed" else 0,
                "at": None if status == "suppressed" else at,
                "updated_at": now,
            }
        )
    ok = [d for d in deliveries if d["status"] in ("sent", "delivered")]
    failed = any(d["status"] == "failed" for d in deliveries)
    status = "sent" if ok else "failed" if failed else "suppressed"
    experiment = rng.random() < 0.1
    out["notifications"].append(
        {
            "id": nid,
            "user_id": f"u{rng.randrange(users):07d}",
            "template_id": f"t{template:02d}",
            "template_version": rng.choice([1, 2]) if template % 4 == 0 else 1,
            "priority": "medium",
            "status": status,
            "send_at": None,
            "reason": None,
            "created_at": created,
            "updated_at": now,
            "experiment_id": "exp1" if experiment else None,
            "variant": rng.choice(["a", "b"]) if experiment else None,
        }
    )
    out["deliveries"].extend(deliveries)
    # Events: mostly on sent notifications; a few on ones that never went out (a stray signal).
    if not ok and rng.random() > 0.05:
        return
    base = min((d["at"] for d in ok), default=created + timedelta(seconds=30))
    for j in range(rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])):
        kind = rng.choice(_EVENT_TYPES)
        late = rng.random() < 0.05
        delay = rng.uniform(2, 20) * 86400 if late else rng.expovariate(1 / 3600)
        via: str | None = rng.choice([d["channel"] for d in ok] + [None]) if ok else None
        meta: dict[str, Any] = {}
        if kind == "converted" and rng.random() < 0.9:
            meta = {"value": round(rng.uniform(1, 200), 2), "currency": rng.choice(CURRENCIES)}
        out["engagement_events"].append(
            {
                "notification_id": nid,
                "type": kind,
                "channel": via,
                "at": base + timedelta(seconds=delay),
                "dedupe_key": f"id:e{j}",
                "metadata": meta,
            }
        )


TABLE_ORDER = [
    "users",
    "preferences",
    "templates",
    "notifications",
    "deliveries",
    "engagement_events",
]


def chunks(scale: float, seed: int = 7, chunk: int = 20_000) -> Iterator[tuple[str, Rows]]:
    """(table name, rows) in insertion order (parents first), at most about `chunk` rows."""
    rng = random.Random(seed)
    size = Size.at(scale)
    now = START + timedelta(days=DAYS + 30)
    yield "templates", _template_rows(now)
    users: Rows = []
    prefs: Rows = []
    for i in range(size.users):
        users.append(_user(rng, i))
        p = _preferences(rng, users[-1]["id"], now)
        if p is not None:
            prefs.append(p)
        if len(users) >= chunk:
            yield "users", users
            yield "preferences", prefs
            users, prefs = [], []
    yield "users", users
    yield "preferences", prefs
    out: dict[str, Rows] = {"notifications": [], "deliveries": [], "engagement_events": []}
    for i in range(size.notifications):
        _notification(rng, i, size.users, out, now)
        if len(out["notifications"]) >= chunk:
            for table in ("notifications", "deliveries", "engagement_events"):
                yield table, out[table]
            out = {"notifications": [], "deliveries": [], "engagement_events": []}
    for table in ("notifications", "deliveries", "engagement_events"):
        yield table, out[table]


async def load(
    engine: AsyncEngine, scale: float, seed: int = 7, chunk: int = 20_000
) -> dict[str, int]:
    """Insert the data set, one transaction per chunk: COPY on PostgreSQL, Core executemany
    elsewhere. The facts (tidings.store.facts): on SQLite the triggers keep them row by row as
    in use; on PostgreSQL the COPY runs with the triggers off (`session_replication_role`,
    which the bench's superuser may set: row by row they would double the load's time), and
    the facts are recounted once at the end. Returns the rows written per table."""
    written = dict.fromkeys(TABLE_ORDER, 0)
    postgresql = engine.dialect.name == "postgresql"
    for name, rows in chunks(scale, seed, chunk):
        if not rows:
            continue
        table = Base.metadata.tables[name]
        async with engine.begin() as conn:
            if postgresql:
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                await _copy(conn, table, rows)
            else:
                await conn.execute(insert(table), rows)
        written[name] += len(rows)
    if postgresql:
        async with engine.begin() as conn:
            await conn.execute(refresh_facts())
            await conn.execute(refresh_delivery_facts())
            await conn.execute(delete(UserEngagementRow))
            await conn.execute(recount_user_engagement())
            await conn.execute(delete(ConversionRow))
            await conn.execute(recount_conversions("postgresql"))
            await conn.execute(delete(UserSentDayRow))
            await conn.execute(recount_sent_days("postgresql"))
    return written


async def _copy(conn: AsyncConnection, table: Table, rows: Rows) -> None:
    """COPY through asyncpg: JSON values as text (jsonb's input form)."""
    columns = [c.name for c in table.columns if c.name in rows[0]]
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    records = [
        tuple(json.dumps(r[c]) if c in json_columns and r[c] is not None else r[c] for c in columns)
        for r in rows
    ]
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table.name, records=records, columns=columns)
