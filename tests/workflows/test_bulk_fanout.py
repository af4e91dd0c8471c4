"""Bulks accepted durably (above `bulk_inline_max`): one transaction, then `BulkStartWorkflow`
starts every accepted recipient's run exactly once, even when a page fails half-way and is
retried. A 10,000-recipient bulk behaves as these 300-recipient ones with the threshold at 50.

On the dev server (it can count runs by task queue). The runs are scheduled an hour ahead so
they wait durably and deliver nothing: what is under test is who got a run, not delivery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.bulk import BulkActivities
from activities.notification import NotificationActivities
from bench.stack import insert_users
from starter.client import Tidings
from starter.client_bulk import BulkRejected
from starter.dev import demo_data
from tests.http.helpers import WELCOME, api
from tests.support import make_settings
from tidings.bulks import BulkStartInput, BulkStatus, bulk_queue, bulk_workflow_id
from tidings.models import NotificationStatus
from tidings.store import Store
from tidings.store.bulks import BulkRecipientRow, BulkRow, pending_reason
from worker.main import build_senders, build_workers, close_senders, run_workers
from workflows.bulk import BulkStartWorkflow

N = 300
INLINE_MAX = 50


@dataclass
class FanoutStack:
    tidings: Tidings
    store: Store
    client: Client
    task_queue: str
    users: list[str]
    # (attempt, position reached) each time it advances, and where to fail a first attempt.
    chunks: list[tuple[int, int]] = field(default_factory=list)
    fail_at: int | None = None
    failed_at: int | None = None

    async def runs(self) -> int:
        """NotificationWorkflow runs on this stack's queue (visibility lags: waited for)."""
        query = f'WorkflowType = "NotificationWorkflow" AND TaskQueue = "{self.task_queue}"'
        return (await self.client.count_workflows(query)).count

    async def wait_started(self, bulk_id: str) -> None:
        await self.client.get_workflow_handle(bulk_workflow_id(bulk_id)).result()

    async def wait_runs(self, expected: int) -> None:
        for _ in range(200):
            if await self.runs() >= expected:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # then a little longer: a count above `expected` must show
        assert await self.runs() == expected


@asynccontextmanager
async def fanout_stack(
    client: Client, tmp_path: Path, *, workers: bool = True
) -> AsyncIterator[FanoutStack]:
    settings = make_settings(tmp_path, bulk_inline_max=INLINE_MAX)
    store = await Store.open(settings.resolved_database_url)
    tidings = Tidings(settings, store, client)
    for template in demo_data.TEMPLATES:
        await tidings.register_template(template)
    users = [f"fan_{i:04d}" for i in range(N)]
    await insert_users(store, users)
    stack = FanoutStack(tidings, store, client, settings.task_queue, users)

    async def after_chunk(reached: int) -> None:
        attempt = activity.info().attempt
        stack.chunks.append((attempt, reached))
        if attempt == 1 and stack.fail_at is not None and reached >= stack.fail_at:
            stack.failed_at, stack.fail_at = reached, None
            raise RuntimeError(f"injected failure at position {reached}")

    async with httpx.AsyncClient() as http:
        senders = build_senders(settings, store, http)
        built = build_workers(
            client,
            NotificationActivities(store, senders),
            task_queue=settings.task_queue,
            channels=senders,
            bulks=BulkActivities(store, after_chunk=after_chunk),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_workers(built if workers else [], stop))
        try:
            yield stack
        finally:
            stop.set()
            await task
            await close_senders(senders)
            await store.close()


def later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def test_a_large_bulk_is_accepted_durably_and_each_recipient_started_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path) as s:
        k = f"fan-{uuid.uuid4().hex[:8]}"
        # The key of users[5] was used before for another request: a conflict.
        await s.tidings.notify(
            user_id=s.users[5],
            template_id="welcome",
            data={"app_name": "Other", "user_name": "X"},
            idempotency_key=f"{k}.{s.users[5]}",
            scheduled_at=later(),
        )
        # users[6]'s was used for the same request: it exists.
        at = later()
        await s.tidings.notify(
            user_id=s.users[6],
            template_id="welcome",
            data=WELCOME,
            idempotency_key=f"{k}.{s.users[6]}",
            scheduled_at=at,
        )
        recipients: list[Any] = list(s.users)
        recipients[10] = "ghost_a"
        recipients[20] = "ghost_b"
        recipients.append(s.users[0])  # the same request twice: one notification
        result = await s.tidings.notify_many(
            recipients, "welcome", data=WELCOME, idempotency_key=k, scheduled_at=at
        )
        o = result.outcomes
        assert result.bulk_id is not None
        assert (result.started, result.accepted, result.existed, result.rejected) == (
            0,
            N - 4,
            2,
            3,
        )
        assert (o[10].field, o[10].reason) == ("user_ids[10]", "no user 'ghost_a'")
        assert o[5].outcome == "rejected" and o[5].field == "user_ids[5].idempotency_key"
        assert "already used" in (o[5].reason or "")
        assert o[6].outcome == "existed" and o[N].outcome == "existed"
        assert o[0].outcome == "accepted" and o[0].notification_id == f"{k}.{s.users[0]}"
        assert o[0].workflow_id == f"notification/{k}.{s.users[0]}"

        await s.wait_started(result.bulk_id)
        record = await s.tidings.get_bulk(result.bulk_id)
        # The accepted, and users[6]'s existing run started again (a no-op), counted as started.
        assert (record.status, record.total, record.started) == (BulkStatus.STARTED, N - 3, N - 3)
        # Every recipient with a notification has exactly one run: the accepted ones, the one
        # that existed, and users[5]'s notification from before (not this bulk's).
        await s.wait_runs(N - 4 + 2)
        status = await s.tidings.status(o[0].notification_id or "")
        assert status.status is NotificationStatus.SCHEDULED
        async with s.store.engine.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(BulkRecipientRow))
        assert left == 0  # the fan-out's rows are gone once started


async def test_a_page_failing_half_way_resumes_without_losing_or_doubling_a_start(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path) as s:
        s.fail_at = 128  # after 128 starts of the first page
        result = await s.tidings.notify_many(s.users, "welcome", data=WELCOME, scheduled_at=later())
        assert result.accepted == N and result.bulk_id is not None
        await s.wait_started(result.bulk_id)
        retried = [reached for attempt, reached in s.chunks if attempt == 2]
        # The retry resumed from the heartbeat, not from the page's first recipient.
        assert s.failed_at is not None and s.failed_at >= 128
        assert retried and min(retried) > s.failed_at, s.chunks
        assert (await s.tidings.get_bulk(result.bulk_id)).started == N
        await s.wait_runs(N)


async def test_the_fanout_continues_as_new_and_stops_at_the_end(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path, workers=False) as s:
        result = await s.tidings.notify_many(
            s.users[:120], "welcome", data=WELCOME, scheduled_at=later()
        )
        assert result.bulk_id is not None
        unpolled = s.client.get_workflow_handle(bulk_workflow_id(result.bulk_id))
        await unpolled.terminate("test: restarted below with small pages")
    # The client started the fan-out with the default pages; nobody polled. Restart it with
    # small pages on a stack with workers, over the same database.
    async with fanout_stack(dev_env.client, tmp_path / "again") as s2:
        bulk_id = result.bulk_id
        entries = await _copy_bulk(s, s2, bulk_id)
        handle = await s2.client.start_workflow(
            BulkStartWorkflow.run,
            BulkStartInput(bulk_id=bulk_id, page_size=25, pages_per_run=2),
            id=f"{bulk_workflow_id(bulk_id)}-small",
            task_queue=bulk_queue(s2.task_queue),
        )
        out = await handle.result()
        assert out.done and out.next_position == entries
        first = s2.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        events = [e.event_type async for e in first.fetch_history_events()]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW in events
        await s2.wait_runs(entries)


async def _copy_bulk(src: FanoutStack, dst: FanoutStack, bulk_id: str) -> int:
    """The bulk's rows from one stack's database to another's, pointed at its task queue."""
    async with src.store.engine.connect() as conn:
        bulk = (await conn.execute(select(BulkRow).where(BulkRow.id == bulk_id))).mappings().one()
        rows = (
            (
                await conn.execute(
                    select(BulkRecipientRow).where(BulkRecipientRow.bulk_id == bulk_id)
                )
            )
            .mappings()
            .all()
        )
    copied = []
    for row in rows:
        payload = {**row["payload"], "task_queue_base": dst.task_queue}
        copied.append({**row, "payload": payload})
    async with dst.store.engine.begin() as conn:
        await conn.execute(insert(BulkRow), [dict(bulk)])
        await conn.execute(insert(BulkRecipientRow), copied)
    return len(copied)


async def test_accepted_but_not_started_answers_from_its_row(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path, workers=False) as s:
        result = await s.tidings.notify_many(s.users[:60], "welcome", data=WELCOME)
        assert result.accepted == 60 and result.bulk_id is not None
        nid = result.outcomes[0].notification_id or ""
        status = await s.tidings.status(nid)
        assert status.status is NotificationStatus.SCHEDULED
        assert status.reason == pending_reason(result.bulk_id)
        record = await s.tidings.get_bulk(result.bulk_id)
        assert (record.status, record.total, record.started) == (BulkStatus.ACCEPTED, 60, 0)
        async with api(s.tidings) as http:
            r = await http.get(f"/v1/notifications/{nid}")
            assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
            r = await http.get(f"/v1/bulks/{result.bulk_id}")
            assert r.status_code == 200 and r.json()["started"] == 0, r.text
            assert (await http.get("/v1/bulks/nope")).status_code == 404
        await s.client.get_workflow_handle(bulk_workflow_id(result.bulk_id)).terminate("test")


async def test_atomic_bulk_writes_nothing_when_one_key_conflicts(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path, workers=False) as s:
        k = f"atomic-{uuid.uuid4().hex[:8]}"
        await s.store.claim_idempotency_key(f"{k}.{s.users[3]}", "another request")
        with pytest.raises(BulkRejected) as caught:
            await s.tidings.notify_many(
                s.users[:80], "welcome", data=WELCOME, idempotency_key=k, atomic=True
            )
        assert caught.value.field == "user_ids[3].idempotency_key"
        assert [o.outcome for o in caught.value.outcomes] == ["rejected"] * 80
        assert await s.store.idempotency_fingerprints([f"{k}.{s.users[0]}"]) == {}
        async with s.store.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(BulkRow)) == 0


class _NoFanout(Tidings):
    async def _start_fanout(self, bulk_id: str) -> str | None:
        return "RPCError: server unreachable"


async def test_a_fanout_that_cannot_start_releases_the_bulk(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path) as s:
        k = f"rel-{uuid.uuid4().hex[:8]}"
        broken = _NoFanout(s.tidings.settings, s.store, s.client)
        at = later()
        failed = await broken.notify_many(
            s.users[:70], "welcome", data=WELCOME, idempotency_key=k, scheduled_at=at
        )
        assert failed.failed == 70 and failed.bulk_id is not None
        assert "could not be started" in (failed.outcomes[0].reason or "")
        record = await s.tidings.get_bulk(failed.bulk_id)
        assert (record.status, record.total) == (BulkStatus.FAILED, 0)
        assert await s.store.idempotency_fingerprints([f"{k}.{s.users[0]}"]) == {}
        assert await s.store.get_notification(f"{k}.{s.users[0]}") is None
        # Nothing was kept: the same bulk again is accepted afresh.
        again = await s.tidings.notify_many(
            s.users[:70], "welcome", data=WELCOME, idempotency_key=k, scheduled_at=at
        )
        assert again.accepted == 70 and again.bulk_id is not None
        await s.wait_started(again.bulk_id)
        await s.wait_runs(70)


async def test_http_answers_202_with_the_bulk_and_every_outcome(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with fanout_stack(dev_env.client, tmp_path) as s, api(s.tidings) as http:
        body = {
            "user_ids": [*s.users[:99], "ghost"],
            "template_id": "welcome",
            "data": WELCOME,
            "scheduled_at": later().isoformat(),
        }
        r = await http.post("/v1/notifications/bulk", json=body)
        assert r.status_code == 202, r.text
        answer = r.json()
        assert (answer["accepted"], answer["rejected"], answer["started"]) == (99, 1, 0)
        assert answer["results"][0]["outcome"] == "accepted"
        assert answer["results"][99]["field"] == "user_ids[99]"
        await s.wait_started(answer["bulk_id"])
        bulk = await http.get(answer["bulk_url"])
        assert bulk.status_code == 200, bulk.text
        assert (bulk.json()["status"], bulk.json()["started"]) == ("started", 99)
        status = await http.get(answer["results"][0]["status_url"])
        assert status.status_code == 200 and status.json()["status"] == "scheduled"
