"""Record NotificationWorkflow, ExperimentWorkflow and BroadcastWorkflow histories for the replay
test.

    .venv/bin/python -m tests.replay.record v5           # notifications, v5
    .venv/bin/python -m tests.replay.record experiment   # an A/B test, v1
    .venv/bin/python -m tests.replay.record broadcast    # broadcasts, v1
    .venv/bin/python -m tests.replay.record broadcast v2 # + a failed one (patches in broadcast.py)

Run it when a release changes NotificationWorkflow on purpose, and keep the older files: the replay
test must go on replaying every history ever recorded, which is what proves that a change (behind
`workflow.patched`) does not break runs that are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from tests.conftest import start_time_skipping
from tests.support import Stack, running_stack
from tidings.broadcast_models import UserIdsAudience
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
)
from tidings.store import Store
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_io import BroadcastInput
from workflows.io import ExperimentResults
from workflows.queues import broadcast_workflow_id, workflow_id

HISTORIES = Path(__file__).parent / "histories"
WELCOME = {"app_name": "MyApp", "user_name": "John"}


async def _save(handle: WorkflowHandle[object, object], name: str) -> None:
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
    print(f"wrote {name}.json ({len(history.events)} events)")


async def _opened_history(store: Store, user_id: str, when: list[datetime]) -> None:
    """Past notifications to `user_id`, opened at `when`: what send_at="optimal" learns from."""
    for i, at in enumerate(when):
        nid = f"replay-history-{user_id}-{i}"
        await store.upsert_notification(
            notification_id=nid,
            user_id=user_id,
            template_id="welcome",
            template_version=1,
            priority=Priority.MEDIUM,
            status=NotificationStatus.SENT,
            channels=[ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=at)],
        )
        await store.record_engagement(
            EngagementEvent(
                notification_id=nid, type=EngagementType.OPENED, channel=Channel.EMAIL, at=at
            )
        )


async def record(version: str) -> None:
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                now = await env.get_current_time()
                local = now.astimezone(ZoneInfo("America/Los_Angeles"))  # user_002's timezone
                await stack.tidings.set_preferences(
                    Preferences(
                        user_id="user_002",
                        quiet_hours=QuietHours(
                            start=(local - timedelta(hours=1)).time().replace(microsecond=0),
                            end=(local + timedelta(hours=2))
                            .time()
                            .replace(second=0, microsecond=0),
                        ),
                    )
                )
                sent = await t.notify(
                    user_id="user_001",
                    template_id="welcome",
                    data=WELCOME,
                    scheduled_at=now + timedelta(days=1),
                    idempotency_key=f"replay-sent-{version}",
                )
                cancelled = await t.notify(
                    user_id="user_001",
                    template_id="welcome",
                    data=WELCOME,
                    scheduled_at=now + timedelta(days=1),
                    idempotency_key=f"replay-cancelled-{version}",
                )
                await t.reschedule(cancelled.notification_id, now + timedelta(hours=3))
                await t.cancel(cancelled.notification_id, "replay fixture")
                quiet = await t.notify(
                    user_id="user_002",
                    template_id="order_confirmation",
                    data={"order_id": "1", "amount": "2", "delivery_date": "3"},
                    priority="medium",
                    idempotency_key=f"replay-quiet-{version}",
                )
                stack.sink.reject_permanently.add("john.doe@example.com")
                fallback = await t.notify(
                    user_id="user_001",
                    template_id="welcome",
                    data=WELCOME,
                    channels=["email"],
                    fallback=["in_app"],
                    idempotency_key=f"replay-fallback-{version}",
                )
                await t.wait_sent(fallback.notification_id)
                stack.sink.reject_permanently.discard("john.doe@example.com")
                escalated = await t.notify(
                    user_id="user_001",
                    template_id="welcome",
                    data=WELCOME,
                    channels=["in_app"],
                    fallback=["email"],
                    escalate_after_minutes=30,
                    idempotency_key=f"replay-escalated-{version}",
                )
                optimal = None
                if version not in ("v1", "v2", "v3", "v4"):  # send_at="optimal" came with v5
                    weeks = [now + timedelta(hours=6) - timedelta(weeks=k) for k in range(1, 5)]
                    await _opened_history(stack.store, "user_001", weeks)
                    optimal = await t.notify(
                        user_id="user_001",
                        template_id="welcome",
                        data=WELCOME,
                        channels=["email"],
                        send_at="optimal",
                        optimal_within=timedelta(hours=20),
                        idempotency_key=f"replay-optimal-{version}",
                    )
                split = None
                if version not in ("v1", "v2"):  # channels recorded as they land came with v3
                    await stack.add_user("hooked", webhook_url=f"{stack.receiver.url}/hooks")
                    await t.register_template(
                        {
                            "id": "both",
                            "channels": ["email", "webhook"],
                            "content": {"subject": "Hi", "text": "Hello"},
                        }
                    )
                    stack.receiver.respond_with(503, times=2)  # the webhook lands later
                    split = await t.notify(
                        user_id="hooked",
                        template_id="both",
                        idempotency_key=f"replay-split-{version}",
                    )
                    await env.sleep(timedelta(minutes=2))
                    await t.wait_sent(split.notification_id)
                stack.sink.reject_permanently.add("jane.smith@example.com")
                await env.sleep(timedelta(days=1, hours=1))
                await t.engage(sent.notification_id, "opened")
                if split is not None:  # repeats count once from v3 on
                    await t.engage(sent.notification_id, "opened")
                    await t.engage(sent.notification_id, "clicked", event_id="link-a")
                    await t.engage(sent.notification_id, "clicked", event_id="link-b")
                if version in ("v1", "v2", "v3"):
                    await t.engage(sent.notification_id, "converted")
                else:  # from v4 the front door writes the event and the run does not
                    await t.record_event(
                        sent.notification_id, {"type": "clicked", "event_id": "link-c"}
                    )
                    await t.record_event(
                        sent.notification_id,
                        {"type": "converted", "value": 5, "currency": "EUR"},
                    )
                await env.sleep(timedelta(days=4))
                runs = [(sent, "sent"), (cancelled, "cancelled"), (quiet, "quiet")]
                if version != "v1":  # fallback and escalation arrived with v2
                    runs += [(fallback, "fallback"), (escalated, "escalated")]
                if split is not None:
                    runs += [(split, "split")]
                if optimal is not None:
                    runs += [(optimal, "optimal")]
                for ref, name in runs:
                    handle = env.client.get_workflow_handle(workflow_id(ref.notification_id))
                    await handle.result()
                    await _save(handle, f"notification_{version}_{name}")
    finally:
        await env.shutdown()


async def record_experiment(version: str) -> None:
    """An A/B test with a holdout, a duplicate enrolment, a continue-as-new (tiny event budget),
    real in-app deliveries and conversions, and the decision: its first and its last run."""
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                ref = await t.create_experiment(
                    {
                        "id": f"replay_{version}",
                        "template_id": "welcome",
                        "data": WELCOME,
                        "variants": [
                            {"name": "plain", "control": True, "channels": ["in_app"]},
                            {"name": "warm", "channels": ["in_app"], "data": {"user_name": "J"}},
                        ],
                        "holdout_percent": 10,
                        "attribution_window": "1h",
                        "minimum_sample": 10,
                        "check_every": "10m",
                        "max_duration": "1d",
                    },
                    event_budget=150,
                )
                handle = env.client.get_workflow_handle(
                    ref.workflow_id, result_type=ExperimentResults
                )
                first_run = (await handle.describe()).run_id
                for i in range(36):
                    await stack.add_user(f"r{i}")
                    enrolment = await t.enroll(ref.experiment_id, f"r{i}")
                    if enrolment.notification_id is None:
                        continue
                    await t.wait_sent(enrolment.notification_id)
                    if enrolment.variant == "warm":
                        await t.engage(enrolment.notification_id, "converted")
                await t.enroll(ref.experiment_id, "r0")
                await env.sleep(timedelta(minutes=11))
                result = await handle.result()
                print(f"ended {result.ending} ({result.winner}) after {result.runs} runs")
                await _save(
                    env.client.get_workflow_handle(ref.workflow_id, run_id=first_run),
                    f"experiment_{version}_first_run",
                )
                await _save(handle, f"experiment_{version}_decided")
                for i in range(36):
                    with contextlib.suppress(RPCError):
                        await env.client.get_workflow_handle(
                            workflow_id(f"exp-{ref.experiment_id}-r{i}")
                        ).terminate("recorded")
    finally:
        await env.shutdown()


async def record_broadcast(version: str) -> None:
    """A broadcast of several pages with a suppressed and a deferred recipient that continues as
    new (its first and last runs), and one paused, resumed, paused again and cancelled."""
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                users = [f"r{i:02d}" for i in range(30)]
                for user_id in users:
                    await stack.add_user(user_id)
                await t.set_preferences(Preferences(user_id="r00", channels={"email": False}))
                now = await env.get_current_time()
                await t.set_preferences(
                    Preferences(
                        user_id="r01",
                        quiet_hours=QuietHours(
                            start=(now - timedelta(hours=1)).time().replace(microsecond=0),
                            end=(now + timedelta(hours=2)).time().replace(second=0, microsecond=0),
                        ),
                    )
                )
                ref = await t.broadcast(
                    "welcome",
                    users,
                    WELCOME,
                    channels=["email", "in_app"],
                    broadcast_id=f"replay_{version}",
                    page_size=8,
                    pages_per_run=2,
                )
                handle = env.client.get_workflow_handle(ref.workflow_id)
                first_run = (await handle.describe()).run_id
                await handle.result()
                await _save(
                    env.client.get_workflow_handle(ref.workflow_id, run_id=first_run),
                    f"broadcast_{version}_first_run",
                )
                await _save(handle, f"broadcast_{version}_completed")
                with contextlib.suppress(RPCError):
                    await env.client.get_workflow_handle(
                        workflow_id(f"bc-{ref.broadcast_id}-r01")
                    ).terminate("recorded")

                other = await t.broadcast(
                    "welcome",
                    users,
                    WELCOME,
                    channels=["in_app"],
                    broadcast_id=f"replay_{version}_cancelled",
                    page_size=5,
                )
                await t.pause_broadcast(other.broadcast_id)
                await t.resume_broadcast(other.broadcast_id)
                await t.pause_broadcast(other.broadcast_id)
                await t.cancel_broadcast(other.broadcast_id, "replay fixture")
                cancelled = env.client.get_workflow_handle(other.workflow_id)
                await cancelled.result()
                await _save(cancelled, f"broadcast_{version}_cancelled")
                with contextlib.suppress(RPCError):
                    await env.client.get_workflow_handle(
                        workflow_id(f"bc-{other.broadcast_id}-r01")
                    ).terminate("recorded")
                if version != "v1":
                    await _record_failed_broadcast(stack, users, version)
    finally:
        await env.shutdown()


async def _record_failed_broadcast(stack: Stack, users: list[str], version: str) -> None:
    """A broadcast whose template version is gone: the plan fails for good, the run records
    status "failed" (broadcast_failed_status) and fails."""
    bid = f"replay_{version}_failed"
    audience = UserIdsAudience(user_ids=users[:5])
    await stack.store.create_broadcast(
        broadcast_id=bid,
        template_id="welcome",
        template_version=999,
        audience=audience,
        channels=[Channel.IN_APP],
        priority=Priority.MEDIUM,
    )
    handle = await stack.tidings.temporal.start_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(
            broadcast_id=bid,
            template_id="welcome",
            template_version=999,
            audience=audience,
            data=WELCOME,
            channels=[Channel.IN_APP],
            task_queue_base=stack.settings.task_queue,
        ),
        id=broadcast_workflow_id(bid),
        task_queue=stack.settings.task_queue,
    )
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    await _save(
        stack.tidings.temporal.get_workflow_handle(handle.id), f"broadcast_{version}_failed"
    )


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "v5"
    if which == "experiment":
        asyncio.run(record_experiment(sys.argv[2] if len(sys.argv) > 2 else "v1"))
    elif which == "broadcast":
        asyncio.run(record_broadcast(sys.argv[2] if len(sys.argv) > 2 else "v1"))
    else:
        asyncio.run(record(which))
