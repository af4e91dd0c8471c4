"""DigestWorkflow on the time-skipping server with the real store (SQLite) and the real
activities. The notification a batch starts is a stand-in NotificationWorkflow that records its
input, and `send_digest` is the real activity wrapped so that a test can hold it (to add an event
mid-send) or fail it after it has started the notification (a retried send)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.digest import DigestActivities
from starter.client import Tidings
from tests.conftest import start_time_skipping
from tests.support import make_settings
from tidings.digests import next_occurrence
from tidings.errors import InvalidRequest
from tidings.models import User
from tidings.store import Store
from workflows.digest import DigestWorkflow
from workflows.digest_io import (
    DigestEventSignal,
    DigestInput,
    DigestStatus,
    SendDigestInput,
    SendDigestOutput,
    digest_workflow_id,
)
from workflows.io import NotificationInput

SENT: dict[str, list[NotificationInput]] = {}  # per task queue


@workflow.defn(name="NotificationWorkflow", sandboxed=False)  # records into SENT
class StandInNotification:
    @workflow.run
    async def run(self, input: NotificationInput) -> None:
        SENT.setdefault(workflow.info().task_queue, []).append(input)


@dataclass
class Rig:
    env: WorkflowEnvironment
    tidings: Tidings
    store: Store
    queue: str
    real: DigestActivities
    hold: asyncio.Event | None = None  # set: sends wait for it
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # a send is waiting
    fail_after_send: int = 0  # this many attempts fail after starting the notification
    attempts: int = 0
    active: Worker | None = None  # the fixture's worker
    user: str = "ada"  # one of the test's own: workflow ids outlive a test on the server

    @property
    def sent(self) -> list[NotificationInput]:
        return SENT.get(self.queue, [])

    def handle(
        self, user: str | None = None, key: str = "comments"
    ) -> WorkflowHandle[Any, DigestStatus]:
        return self.env.client.get_workflow_handle_for(
            DigestWorkflow.run, digest_workflow_id(user or self.user, key)
        )

    def send_activity(self) -> Callable[..., Any]:
        @activity.defn(name="send_digest")
        async def send_digest(input: SendDigestInput) -> SendDigestOutput:
            self.attempts += 1
            if self.hold is not None:
                self.holding.set()
                await self.hold.wait()
            out = await self.real.send_digest(input)
            if self.fail_after_send > 0:
                self.fail_after_send -= 1
                raise RuntimeError("lost the answer after the notification started")
            return out

        return send_digest

    def worker(self) -> Worker:
        return Worker(
            self.env.client,
            task_queue=self.queue,
            workflows=[DigestWorkflow, StandInNotification],
            activities=[self.real.open_digest, self.real.seal_digest, self.send_activity()],
        )

    async def event(self, event_id: str, **data: Any) -> bool:
        ref = await self.tidings.digest_event(self.user, "comments", event_id, data)
        return ref.duplicate

    async def result(self, skip: timedelta = timedelta(hours=2)) -> DigestStatus:
        """Skip past the window, then the run's result. (Only handles that `start_workflow`
        returned skip time by themselves while waiting for a result; these are looked up.)"""
        await self.env.sleep(skip)
        return await asyncio.wait_for(self.handle().result(), 30)

    async def waiting(self, within: float = 10.0) -> DigestStatus:
        """The status once the run has read the database and opened its window."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            status = await self.handle().query(DigestWorkflow.status)
            if status.closes_at is not None or loop.time() >= deadline:
                return status
            await asyncio.sleep(0.05)

    async def sent_count(self, n: int, within: float = 10.0) -> None:
        """Wait (without skipping time) until `n` batches have been sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.sent) < n:
            assert loop.time() < deadline, f"{len(self.sent)} batches sent, expected {n}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def make_rig(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path)
    store = await Store.open(settings.resolved_database_url)
    tidings = Tidings(settings, store, env.client)
    user = f"ada-{uuid.uuid4().hex[:8]}"
    await tidings.upsert_user(User(id=user, email="ada@example.com", timezone="Europe/Berlin"))
    await tidings.register_template(
        {
            "id": "comment_digest",
            "channels": ["in_app"],
            "content": {"subject": "{{ total }} new comments", "text": "{{ events | length }}"},
            "sample_data": {"total": 1, "events": [{"id": "c1", "data": {}}]},
        }
    )
    await tidings.register_digest(
        key="comments", template_id="comment_digest", window_seconds=3600, max_events=10
    )
    rig = Rig(env, tidings, store, settings.task_queue, DigestActivities(store), user=user)
    rig.active = rig.worker()
    try:
        async with rig.active:
            yield rig
            with contextlib.suppress(RPCError):
                await rig.handle().terminate("test finished")
    finally:
        await store.close()


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """Each test on a time-skipping server of its own: a digest run on the test server can
    leave its time-skipping lock held after the test ends (a continue-as-new does, see
    test_experiment.py; in CI one of this module's earlier tests did so too), and a shared
    server then stalls every later test's `sleep` until its RPC times out."""
    env = await start_time_skipping()
    try:
        async with make_rig(env, tmp_path) as made:
            yield made
    finally:
        await env.shutdown()


async def test_window_sends_one_notification_and_repeats_count_once(rig: Rig) -> None:
    assert await rig.event("c1", author="ann") is False
    assert await rig.event("c2", author="bob") is False
    assert await rig.event("c1", author="ann") is True  # the same event id again
    status = await rig.waiting()
    assert (status.pending, status.received, status.repeats) == (2, 2, 1)
    assert status.closes_at is not None
    final = await rig.result()  # skips past the end of the window
    assert (final.batches_sent, final.events_sent, final.running) == (1, 2, False)
    [sent] = rig.sent
    assert sent.notification_id == f"digest:{rig.user}:comments:1"
    data = sent.request.data
    assert data["total"] == 2 and [e["id"] for e in data["events"]] == ["c1", "c2"]
    assert data["events"][1]["data"] == {"author": "bob"}
    assert data["first_at"] <= data["last_at"]


async def test_event_during_the_send_goes_into_the_next_batch(rig: Rig) -> None:
    rig.hold = asyncio.Event()
    await rig.event("c1")
    await rig.event("c2")
    await rig.tidings.flush_digest(rig.user, "comments")
    await asyncio.wait_for(rig.holding.wait(), 10)  # batch 1 is sealed and being sent
    await rig.event("c3")
    rig.hold.set()
    final = await rig.result()
    assert [s.request.data["total"] for s in rig.sent] == [2, 1]
    ids = [[e["id"] for e in s.request.data["events"]] for s in rig.sent]
    assert ids == [["c1", "c2"], ["c3"]]  # never lost, never in both
    assert (final.batches_sent, final.events_sent) == (2, 3)


async def test_retried_send_neither_drops_nor_repeats(rig: Rig) -> None:
    rig.fail_after_send = 1
    await rig.event("c1")
    await rig.event("c2")
    final = await rig.result()
    assert rig.attempts == 2
    [sent] = rig.sent  # the retry found the notification the first attempt started
    assert sent.request.data["total"] == 2
    assert (final.batches_sent, final.events_sent) == (1, 2)


async def test_max_events_closes_the_batch_early(rig: Rig) -> None:
    await rig.tidings.register_digest(
        key="comments", template_id="comment_digest", window_seconds=3600, max_events=3
    )
    start = await rig.env.get_current_time()
    for i in range(3):
        await rig.event(f"c{i}")
    await rig.sent_count(1)
    assert await rig.env.get_current_time() - start < timedelta(minutes=59)
    assert rig.sent[0].request.data["total"] == 3


async def test_a_later_event_starts_a_new_run_that_numbers_on(rig: Rig) -> None:
    await rig.event("c1")
    await rig.result()
    await rig.event("c2")  # the first run has completed: signal-with-start begins another
    await rig.result()
    assert [s.notification_id for s in rig.sent] == [
        f"digest:{rig.user}:comments:1",
        f"digest:{rig.user}:comments:2",
    ]


async def test_stored_event_whose_signal_was_lost_is_picked_up(rig: Rig) -> None:
    # The front door stored the event and died before signalling; the next event's run reads it.
    await rig.store.add_digest_event(user_id=rig.user, key="comments", event_id="lost", data={})
    await rig.event("c2")
    final = await rig.result()
    assert final.events_sent == 2
    assert [e["id"] for e in rig.sent[0].request.data["events"]] == ["lost", "c2"]


async def test_continue_as_new_carries_the_counters(rig: Rig) -> None:
    await rig.tidings.register_digest(
        key="comments", template_id="comment_digest", window_seconds=3600, max_events=1000
    )
    await rig.env.client.start_workflow(
        DigestWorkflow.run,
        DigestInput(user_id=rig.user, key="comments", task_queue_base=rig.queue, event_budget=100),
        id=digest_workflow_id(rig.user, "comments"),
        task_queue=rig.queue,
        start_signal="event",
        start_signal_args=[DigestEventSignal(event_id="none", seq=0)],  # a repeat: no row
    )
    for i in range(40):
        await rig.event(f"c{i}")
    await rig.event("c3")  # a repeat, in a later run
    final = await rig.result()
    assert final.runs >= 2
    assert (final.received, final.batches_sent, final.events_sent) == (40, 1, 40)
    assert final.repeats == 2
    [sent] = rig.sent
    assert sent.request.data["total"] == 40


async def test_worker_restart_mid_window_loses_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # On the dev server, in real time: the time-skipping server does not hand a stopped
    # worker's sticky workflow task on to the next worker while it skips time.
    async with make_rig(dev_env, tmp_path) as rig:
        await rig.tidings.register_digest(
            key="comments", template_id="comment_digest", window_seconds=4, max_events=10
        )
        await rig.event("c1")
        await rig.waiting()
        assert rig.active is not None
        await rig.active.shutdown()  # the worker goes away mid-window
        await rig.event("c2")  # stored and signalled while no worker polls
        async with rig.worker():  # a new worker takes over the same queue
            await rig.event("c3")
            final = await rig.result(timedelta(0))
        assert final.events_sent == 3
        assert [e["id"] for e in rig.sent[0].request.data["events"]] == ["c1", "c2", "c3"]


async def test_scheduled_digest_waits_for_the_calendar_in_the_users_zone(rig: Rig) -> None:
    definition = await rig.tidings.register_digest(
        key="comments",
        template_id="comment_digest",
        max_events=100,
        schedule={"days": [0, 1, 2, 3, 4], "at": "09:00"},
    )
    before = await rig.env.get_current_time()
    await rig.event("c1")
    status = await rig.waiting()
    assert definition.schedule is not None and status.closes_at is not None
    expected = next_occurrence(definition.schedule, before, "Europe/Berlin")
    assert abs(status.closes_at - expected) < timedelta(minutes=1)
    await rig.result(timedelta(days=4))
    assert len(rig.sent) == 1
    assert await rig.env.get_current_time() >= status.closes_at


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t, u: t.digest_event(u, "nope", "e1"), "key"),
        (lambda t, u: t.digest_event("nobody", "comments", "e1"), "user_id"),
        (lambda t, u: t.digest_event(u, "comments", "bad id"), "event_id"),
        (lambda t, u: t.register_digest(key="k", template_id="missing"), "template_id"),
        (
            lambda t, u: t.register_digest(key="k", template_id="comment_digest", max_events=0),
            "max_events",
        ),
        (
            lambda t, u: t.register_digest(key="k", template_id="comment_digest", window_seconds=0),
            "window_seconds",
        ),
    ],
)
async def test_bad_input_names_the_field_and_starts_nothing(
    rig: Rig, call: Callable[[Tidings, str], Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as e:
        await call(rig.tidings, rig.user)
    assert e.value.field == field
    assert await rig.store.get_digest("k") is None
    with pytest.raises(RPCError):
        await rig.handle().describe()
    with pytest.raises(RPCError):
        await rig.handle("nobody").describe()


async def test_back_to_back_batches_continue_as_new_and_send_each_event_once(
    rig: Rig,
) -> None:
    await rig.tidings.register_digest(
        key="comments", template_id="comment_digest", window_seconds=3600, max_events=3
    )
    await rig.env.client.start_workflow(
        DigestWorkflow.run,
        DigestInput(user_id=rig.user, key="comments", task_queue_base=rig.queue, event_budget=100),
        id=digest_workflow_id(rig.user, "comments"),
        task_queue=rig.queue,
        start_signal="event",
        start_signal_args=[DigestEventSignal(event_id="none", seq=0)],
    )
    for i in range(30):
        await rig.event(f"c{i}")
    final = await rig.result()
    assert final.runs >= 2 and final.events_sent == 30
    assert len(rig.sent) >= 2
    assert sum(s.request.data["total"] for s in rig.sent) == 30  # each event in one batch
    shown = [e["id"] for s in rig.sent for e in s.request.data["events"]]
    assert len(shown) == len(set(shown))  # no event shown in two batches
    ids = [s.notification_id for s in rig.sent]
    assert len(set(ids)) == len(ids)
    stored = await rig.store.pending_digest(rig.user, "comments")
    assert (stored.pending, stored.sent_events) == (0, 30)
