"""Broadcasts through the client against the real worker (store, batch activities, SMTP sink,
inbox) on the time-skipping server: a few hundred recipients each sent exactly once, opt-outs
suppressed, quiet hours deferred to a workflow of their own, continue-as-new carrying the
counters, a batch that crashes midway re-sending nobody, pause/resume/cancel, bad input."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.broadcast import BroadcastActivities
from tests.support import Stack, running_stack
from tidings.broadcast_models import UserIdsAudience, notification_id
from tidings.errors import Conflict, InvalidRequest
from tidings.models import Channel, Preferences, Priority, QuietHours
from tidings.store.tables import InboxRow
from workflows import search_attributes as sa
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_io import BroadcastInput, BroadcastProgress
from workflows.queues import broadcast_workflow_id, workflow_id

WELCOME = {"app_name": "MyApp", "user_name": "friend"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def add_users(stack: Stack, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    for user_id in ids:
        await stack.add_user(user_id, timezone="UTC")
    return ids


async def result_of(stack: Stack, broadcast_id: str) -> BroadcastProgress:
    handle = stack.tidings.temporal.get_workflow_handle_for(
        BroadcastWorkflow.run, broadcast_workflow_id(broadcast_id)
    )
    # The history long poll can come back empty when it times out under load; the SDK reports
    # that as "No completion event found" although the run is still going. Ask again.
    for _ in range(20):
        try:
            return await handle.result()
        except RuntimeError as e:
            if "No completion event found" not in str(e):
                raise
    raise AssertionError(f"broadcast {broadcast_id} never completed")


async def terminate_deferred(stack: Stack, broadcast_id: str, user_ids: list[str]) -> None:
    for user_id in user_ids:
        with contextlib.suppress(RPCError):
            await stack.tidings.temporal.get_workflow_handle(
                workflow_id(notification_id(broadcast_id, user_id))
            ).terminate("test finished")


async def inbox_count(stack: Stack, prefix: str) -> Counter[str]:
    async with stack.store.engine.connect() as conn:
        rows = await conn.execute(
            select(InboxRow.notification_id, func.count())
            .where(InboxRow.user_id.like(f"{prefix}%"))
            .group_by(InboxRow.notification_id)
        )
        return Counter({nid: int(n) for nid, n in rows.all()})


def emails_to(stack: Stack, prefix: str) -> Counter[str]:
    return Counter(
        rcpt.split("@")[0]
        for mail in stack.sink.messages
        for rcpt in mail.rcpt_tos
        if rcpt.startswith(prefix)
    )


async def test_every_recipient_once_suppressed_deferred_and_continue_as_new(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    prefix = f"a{uuid.uuid4().hex[:5]}-"
    ids = await add_users(stack, prefix, 300)
    opted_out, sleepy = ids[:20], ids[20:30]
    for user_id in opted_out:
        await stack.tidings.set_preferences(
            Preferences(user_id=user_id, channels={Channel.EMAIL: False})
        )
    now = await time_env.get_current_time()
    quiet = QuietHours(
        start=(now - timedelta(hours=1)).time().replace(microsecond=0),
        end=(now + timedelta(hours=3)).time().replace(second=0, microsecond=0),
    )
    for user_id in sleepy:
        await stack.tidings.set_preferences(Preferences(user_id=user_id, quiet_hours=quiet))

    ref = await stack.tidings.broadcast(
        "welcome", ids, WELCOME, channels=["email", "in_app"], page_size=50, pages_per_run=2
    )
    try:
        result = await result_of(stack, ref.broadcast_id)
        assert result.status == "completed"
        assert result.runs >= 2  # continued as new, counters carried
        counters = result.counters
        assert counters.recipients == 300
        email, in_app = counters.channels[Channel.EMAIL], counters.channels[Channel.IN_APP]
        assert (email.targeted, email.sent, email.suppressed, email.deferred, email.failed) == (
            300,
            270,
            20,
            10,
            0,
        )
        assert (in_app.targeted, in_app.sent, in_app.deferred, in_app.failed) == (300, 290, 10, 0)

        # Exactly once at the SMTP sink and in the inbox; nobody suppressed or deferred got one.
        mailed = emails_to(stack, prefix)
        assert set(mailed) == set(ids[30:]) and set(mailed.values()) == {1}
        ids_seen = [m.message_id for m in stack.sink.messages if m.rcpt_tos[0].startswith(prefix)]
        assert len(set(ids_seen)) == 270
        inbox = await inbox_count(stack, prefix)
        assert len(inbox) == 290 and set(inbox.values()) == {1}

        # Every recipient's outcome, with its batch, in the database; counters recorded too.
        counts = await stack.store.broadcast_status_counts(ref.broadcast_id)
        assert counts[(Channel.EMAIL, "sent")] == 270
        assert counts[(Channel.EMAIL, "suppressed")] == 20
        assert counts[(Channel.EMAIL, "deferred")] == 10
        assert counts[(Channel.IN_APP, "delivered")] == 290
        rows = await stack.store.broadcast_recipients(ref.broadcast_id, limit=1000)
        assert {r.batch for r in rows} == {1, 2, 3, 4, 5, 6}
        record = await stack.store.get_broadcast(ref.broadcast_id)
        assert record is not None and record.status == "completed"
        assert record.counters == counters

        # Each deferred recipient has a notification of its own, waiting out quiet hours.
        for user_id in sleepy:
            handle = stack.tidings.temporal.get_workflow_handle(
                workflow_id(notification_id(ref.broadcast_id, user_id))
            )
            assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
        progress = await stack.tidings.broadcast_progress(ref.broadcast_id)
        assert progress.counters == counters

        with pytest.raises(Conflict, match="completed"):
            await stack.tidings.pause_broadcast(ref.broadcast_id)
    finally:
        await terminate_deferred(stack, ref.broadcast_id, sleepy)


class CrashOnce(BroadcastActivities):
    """The first attempt of each batch dies once half its page is recorded; a later attempt
    notes the heartbeat index it resumed from."""

    resumed: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "flush_every": 10})

    async def _after_flush(self, index: int) -> None:
        info = activity.info()
        if info.attempt == 1 and index >= 20:
            raise RuntimeError("worker crashed mid-batch (injected)")
        if info.attempt > 1:
            details = info.heartbeat_details
            CrashOnce.resumed[info.activity_id] = int(details[0]) if details else 0


async def test_a_batch_retried_after_a_crash_midway_resends_nobody(
    time_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CrashOnce.resumed = {}
    monkeypatch.setattr("worker.main.BroadcastActivities", CrashOnce)
    async with running_stack(time_env.client, tmp_path) as stack:
        await stack.seed()
        prefix = f"c{uuid.uuid4().hex[:5]}-"
        ids = await add_users(stack, prefix, 120)
        # One send at a time: when the attempt dies, every send it made is recorded.
        ref = await stack.tidings.broadcast(
            "welcome", ids, WELCOME, channels=["email", "in_app"], page_size=40, concurrency=1
        )
        result = await result_of(stack, ref.broadcast_id)
        assert result.status == "completed"
        assert result.counters.channels[Channel.EMAIL].sent == 120
        assert result.counters.channels[Channel.IN_APP].sent == 120
        mailed = emails_to(stack, prefix)
        assert set(mailed) == set(ids) and set(mailed.values()) == {1}
        inbox = await inbox_count(stack, prefix)
        assert len(inbox) == 120 and set(inbox.values()) == {1}
        # Every batch resumed from its heartbeat, skipping what the crashed attempt recorded.
        assert len(CrashOnce.resumed) == 6
        assert all(index >= 10 for index in CrashOnce.resumed.values()), CrashOnce.resumed

        # Many sends in flight when the attempt dies: those not yet recorded are the in-doubt
        # window. In-app is still exactly once (the inbox is keyed by the notification id);
        # an email may arrive twice, with the same Message-ID, so the mail client shows one.
        stack.sink.clear()
        prefix2 = f"d{uuid.uuid4().hex[:5]}-"
        ids2 = await add_users(stack, prefix2, 80)
        ref2 = await stack.tidings.broadcast(
            "welcome", ids2, WELCOME, channels=["email", "in_app"], page_size=40, concurrency=8
        )
        result2 = await result_of(stack, ref2.broadcast_id)
        assert result2.counters.channels[Channel.EMAIL].sent == 80
        inbox2 = await inbox_count(stack, prefix2)
        assert len(inbox2) == 80 and set(inbox2.values()) == {1}
        by_user: dict[str, set[str | None]] = {}
        for mail in stack.sink.messages:
            by_user.setdefault(mail.rcpt_tos[0].split("@")[0], set()).add(mail.message_id)
        assert set(by_user) == set(ids2)
        assert all(len(message_ids) == 1 for message_ids in by_user.values())
        again = sum(emails_to(stack, prefix2).values()) - 80
        # At most the sends in flight plus those awaiting the next write, per crashed batch.
        assert again <= 2 * (8 + 10)


async def test_pause_resume_and_cancel(stack: Stack) -> None:
    prefix = f"p{uuid.uuid4().hex[:5]}-"
    ids = await add_users(stack, prefix, 60)
    ref = await stack.tidings.broadcast("welcome", ids, WELCOME, channels=["in_app"], page_size=10)
    paused = await stack.tidings.pause_broadcast(ref.broadcast_id)
    assert paused.status == "paused"
    progress = await stack.tidings.broadcast_progress(ref.broadcast_id)
    assert progress.status == "paused" and progress.pages < 6
    resumed = await stack.tidings.resume_broadcast(ref.broadcast_id)
    assert resumed.status == "running"
    done = await result_of(stack, ref.broadcast_id)
    assert done.status == "completed"
    assert done.counters.channels[Channel.IN_APP].sent == 60

    other = await stack.tidings.broadcast(
        "welcome", ids, WELCOME, channels=["in_app"], page_size=10
    )
    await stack.tidings.pause_broadcast(other.broadcast_id)
    cancelled = await stack.tidings.cancel_broadcast(other.broadcast_id, "changed our minds")
    assert cancelled.status == "cancelling"
    final = await result_of(stack, other.broadcast_id)
    assert final.status == "cancelled" and final.reason == "changed our minds"
    assert final.counters.channels.get(Channel.IN_APP) is None or (
        final.counters.channels[Channel.IN_APP].sent < 60
    )
    record = await stack.store.get_broadcast(other.broadcast_id)
    assert record is not None and record.status == "cancelled"
    for action in (stack.tidings.pause_broadcast, stack.tidings.resume_broadcast):
        with pytest.raises(Conflict, match="cancelled"):
            await action(other.broadcast_id)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"template_id": "welcome", "audience": []}, "audience.user_ids"),
        ({"template_id": "nope", "audience": ["user_001"]}, "template_id"),
        (
            {"template_id": "welcome", "audience": ["user_001"], "channels": ["sms"]},
            "channels",
        ),
        ({"template_id": "welcome", "audience": "segment:vips"}, "audience.segment"),
        ({"template_id": "welcome", "audience": ["user_001", "ghost"]}, "audience.user_ids[1]"),
        ({"template_id": "welcome", "audience": "everyone"}, "audience"),
        ({"template_id": "welcome", "audience": ["user_001"], "page_size": 0}, "page_size"),
        ({"template_id": "welcome", "audience": ["user_001"], "data": {}}, "data"),
        (
            {"template_id": "welcome", "audience": ["user_001"], "broadcast_id": "a:b"},
            "broadcast_id",
        ),
    ],
)
async def test_bad_input_is_refused_and_starts_nothing(
    stack: Stack, kwargs: dict[str, object], field: str
) -> None:
    kwargs.setdefault("data", WELCOME)
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.broadcast(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
    assert await stack.store.list_broadcasts() == []


async def test_a_failed_broadcast_is_recorded_failed(stack: Stack) -> None:
    """A non-retryable failure (here the template version is gone) fails the workflow and
    records status "failed" with the reason, in the row and in TidingsStatus."""
    prefix = f"f{uuid.uuid4().hex[:5]}-"
    ids = await add_users(stack, prefix, 3)
    bid = f"fail-{prefix}"
    await stack.store.create_broadcast(
        broadcast_id=bid,
        template_id="welcome",
        template_version=999,
        audience=UserIdsAudience(user_ids=ids),
        channels=[Channel.IN_APP],
        priority=Priority.MEDIUM,
    )
    handle = await stack.tidings.temporal.start_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(
            broadcast_id=bid,
            template_id="welcome",
            template_version=999,
            audience=UserIdsAudience(user_ids=ids),
            data=WELCOME,
            channels=[Channel.IN_APP],
            task_queue_base=stack.settings.task_queue,
        ),
        id=broadcast_workflow_id(bid),
        task_queue=stack.settings.task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.STATUS, "running")]),
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    record = await stack.store.get_broadcast(bid)
    assert record is not None and record.status == "failed" and record.finished_at is not None
    described = await handle.describe()
    assert described.status is WorkflowExecutionStatus.FAILED
    assert described.typed_search_attributes.get(sa.STATUS) == "failed"
    with pytest.raises(Conflict, match="failed"):
        await stack.tidings.pause_broadcast(bid)
    progress = await stack.tidings.broadcast_progress(bid)
    assert progress.status == "failed"


async def test_pause_and_resume_show_in_the_status_search_attribute(stack: Stack) -> None:
    prefix = f"s{uuid.uuid4().hex[:5]}-"
    ids = await add_users(stack, prefix, 40)
    ref = await stack.tidings.broadcast("welcome", ids, WELCOME, channels=["in_app"], page_size=5)
    handle = stack.tidings.temporal.get_workflow_handle(ref.workflow_id)
    await stack.tidings.pause_broadcast(ref.broadcast_id)
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) == "paused"
    await stack.tidings.resume_broadcast(ref.broadcast_id)
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) in (
        "running",
        "completed",
    )
    done = await result_of(stack, ref.broadcast_id)
    assert done.status == "completed"
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) == "completed"
