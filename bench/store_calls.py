"""CPU of the store calls one notification makes (email + in-app), call by call.

    .venv/bin/python bench/store_calls.py [--count N] [--pg [URL]] [--finish]

No Temporal, no senders: the calls the front door, the plan and the two deliveries make, in the
order a run makes them, on a SQLite store in a temporary directory or (--pg) a throwaway schema
in PostgreSQL. Prints `store CALL MS` per call, the median `time.process_time` over N
notifications (after a warm-up), and the SQL statements and transactions per notification.
Only the Store's public methods are called, so the same script measures another checkout
(`PYTHONPATH=<checkout> python bench/store_calls.py`). `--finish`: the path of runs on
`final-status-by-last-delivery`, where the deliveries' transactions look for the final status and
the last writes it, and the run makes no final record (not on checkouts without it).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python bench/store_calls.py`), the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, cast

from bench.sqlcount import SqlCounter
from bench.stack import _store
from tidings import eventloop, planning
from tidings.frequency import FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Priority,
    Template,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.store import LedgerEntry, Store

try:
    from tidings.store.notifications import SendRecord
except ImportError:  # a checkout before deliver_inbox_item: not used there
    SendRecord = None  # type: ignore[assignment,misc]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
USERS = 50
WARM_UP = 20


async def _seed(store: Store) -> None:
    for i in range(USERS):
        await store.upsert_user(User(id=f"u{i}", email=f"u{i}@example.com"))
    await store.add_template_version(
        TemplateDefinition(
            id="alert",
            name="Alert",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(subject="Alert {{ n }}", text="Notification {{ n }}."),
            sample_data={"n": 0},
        )
    )


class Timings:
    def __init__(self) -> None:
        self.by_call: dict[str, list[float]] = {}
        self.counting = False

    async def run(self, name: str, call: Awaitable[Any]) -> Any:
        began = time.process_time()  # the coroutine does nothing until awaited
        result = await call
        if self.counting:
            self.by_call.setdefault(name, []).append((time.process_time() - began) * 1000)
        return result


async def _front_door_reads(store: Store, user_id: str) -> Template | None:
    """The user and the template's latest version: one read where the store has it."""
    both = getattr(store, "user_and_template", None)
    if both is not None:
        _, template = await both(user_id, "alert")
        return cast(Template | None, template)
    await store.get_user(user_id)
    return await store.get_template("alert")


async def _one(store: Store, timings: Timings, n: int, finish: bool) -> None:
    """The store calls of notification `n`, in a run's order."""
    nid, user_id = f"n{n}", f"u{n % USERS}"
    t = timings.run
    # The front door.
    template = await t("front door reads", _front_door_reads(store, user_id))
    assert template is not None
    await t("claim_idempotency_key", store.claim_idempotency_key(nid, "f" * 64))
    # The plan, with its SENDING record.
    now = datetime.now(UTC)
    request = planning.PlanRequest(
        notification_id=nid,
        user_id=user_id,
        template_id="alert",
        template_version=template.version,
        priority=Priority.MEDIUM,
        not_before=now,
    )
    await t(
        "plan_and_record",
        planning.plan_and_record(
            store,
            request,
            configured=[Channel.EMAIL, Channel.IN_APP],
            caps=FrequencyCaps(),
            record=planning.StatusRecord(),
        ),
    )
    # Each delivery, in-app first (the plan's activity sends it), then email: its read, the
    # in-app item, the ledger with the delivery row. A store with `deliver_inbox_item` writes
    # the in-app item, ledger entry and row in one transaction, and its plan asks in-app for
    # the final status only when in-app is the only channel (with --finish).
    combined = getattr(store, "deliver_inbox_item", None)
    for channel in (Channel.IN_APP, Channel.EMAIL):
        key = f"{nid}:{channel.value}"
        await t("recipient_state", store.recipient_state(user_id, ledger_key=key))
        target = f"{user_id}@example.com"
        status = DeliveryStatus.SENT
        if channel is Channel.IN_APP:
            target, status = f"inbox:{user_id}", DeliveryStatus.DELIVERED
        entry = LedgerEntry(
            key=key, notification_id=nid, channel=channel, target=target, status=status
        )
        result = ChannelResult(channel=channel, status=status, target=target, attempts=1, at=now)
        last = channel is Channel.EMAIL
        if channel is Channel.IN_APP and combined is not None:
            record = SendRecord(entry, result, finish=finish and last)
            await t(
                "deliver_inbox_item",
                combined(
                    user_id=user_id,
                    notification_id=nid,
                    title="Alert",
                    body="Hi",
                    category=template.category,
                    record=lambda _item, record=record: record,
                ),
            )
            continue
        if channel is Channel.IN_APP:
            await t(
                "add_inbox_item",
                store.add_inbox_item(
                    user_id=user_id,
                    notification_id=nid,
                    title="Alert",
                    body="Hi",
                    category=template.category,  # as the in-app sender passes it
                ),
            )
        # Main's plan asked in-app for the final status too.
        await t("record_send", store.record_send(entry, result, finish=finish))
    if finish:
        return  # the email delivery, which landed last, wrote the final status
    # The run's final record: the notification row (its channels are in the database already).
    await t(
        "upsert_notification",
        store.upsert_notification(
            notification_id=nid,
            user_id=user_id,
            template_id="alert",
            template_version=template.version,
            priority=Priority.MEDIUM,
            status=NotificationStatus.SENT,
            channels=[],
        ),
    )


async def measure(database_url: str | None, count: int, finish: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="tidings-store-calls-") as tmp:
        async with _store(database_url, Path(tmp)) as (store, label, _schema):
            await _seed(store)
            timings = Timings()
            for n in range(WARM_UP):
                await _one(store, timings, n, finish)
            counter = SqlCounter(store.engine)
            before = counter.snapshot()
            timings.counting = True
            began = time.process_time()
            for n in range(WARM_UP, WARM_UP + count):
                await _one(store, timings, n, finish)
            total = (time.process_time() - began) * 1000 / count
            sql = counter.snapshot().minus(before)
    print(f"{label}, {count} notifications (email + in-app), median process_time per call:")
    for name, values in timings.by_call.items():
        per_call = statistics.median(values)
        calls = len(values) // count
        print(f"store {name} {per_call:.3f} ms" + (f" (x{calls})" if calls > 1 else ""))
    print(f"store all calls of one notification {total:.2f} ms (mean)")
    print(
        f"store SQL per notification: {sql.statements / count:.1f} statements"
        f" in {sql.transactions / count:.1f} transactions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--pg", nargs="?", const=PG_URL, default=None, metavar="URL")
    parser.add_argument("--finish", action="store_true", help="the last delivery's final status")
    args = parser.parse_args()
    eventloop.run(measure(args.pg, args.count, args.finish))


if __name__ == "__main__":
    main()
