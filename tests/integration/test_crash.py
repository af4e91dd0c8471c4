"""Kill -9 the worker between a provider's acceptance and the activity's completion, restart it,
and count what each provider received. This is the guarantee each channel documents:

- in-app: effectively-once (the inbox row is unique per notification; a retry finds it);
- email: at-least-once, with the same Message-ID on every attempt so receivers can drop repeats;
- webhook: at-least-once, with the same `webhook-id` on every attempt (Standard Webhooks asks
  receivers to deduplicate on it).
Nothing is lost: the retried activity delivers after the restart, and soon: the deliver activity
heartbeats, so Temporal notices the dead worker within the heartbeat timeout rather than waiting out
the 30 s attempt timeout (issue 7, defect 9). The delay from the kill to each retried delivery's
arrival is measured and printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starter.client import Tidings
from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver
from tests.support import make_settings
from tidings.models import Channel, DeliveryStatus, NotificationStatus, User
from tidings.store import Store
from tidings.targets import LOOPBACK
from workflows.policies import ATTEMPT_TIMEOUTS, HEARTBEAT_TIMEOUT, RETRY_POLICIES

# A behaviour bound, not a benchmark: the dead attempt is noticed after the heartbeat timeout, the
# retry waits the retry policy's first interval (5 s for email and webhook), and the restarted
# worker needs a few seconds to poll. Well under the 30 s attempt timeout that applied before.
SLACK = timedelta(seconds=5)


def _retry_bound(channel: Channel) -> timedelta:
    initial = RETRY_POLICIES[channel].initial_interval or timedelta(seconds=1)
    return HEARTBEAT_TIMEOUT + initial + SLACK


async def _arrival(seen: Callable[[], bool], since: float) -> float:
    """Seconds from `since` (loop time) until `seen()` holds."""
    loop = asyncio.get_running_loop()
    while not seen():
        await asyncio.sleep(0.05)
    return loop.time() - since


async def _heartbeat_timeouts(handle: WorkflowHandle[object, object]) -> set[float]:
    """The heartbeat timeouts (seconds) the workflow scheduled its deliver activities with."""
    history = await handle.fetch_history()
    return {
        e.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


async def _start_worker(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        env=env,
        cwd=cwd,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while b"worker running" not in await proc.stderr.readline():
            pass
    # Keep draining its log so the pipe never fills and blocks it.
    asyncio.get_running_loop().create_task(proc.stderr.read())
    return proc


@pytest_asyncio.fixture(loop_scope="session")
async def setup(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[Tidings, SmtpSink, WebhookReceiver, dict[str, str]]]:
    async with SmtpSink() as sink, WebhookReceiver() as receiver:
        settings = make_settings(tmp_path, smtp_port=sink.port)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
            "TIDINGS_ENVIRONMENT": "test",
            "TIDINGS_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TIDINGS_DATABASE_URL": settings.resolved_database_url,
            "TIDINGS_TASK_QUEUE": settings.task_queue,
            "TIDINGS_SMTP_PORT": str(sink.port),
            # The webhook receiver is on loopback.
            "TIDINGS_WEBHOOK_ALLOWED_NETWORKS": ",".join(LOOPBACK),
        }
        store = await Store.open(settings.resolved_database_url)
        tidings = Tidings(settings, store, dev_env.client)
        try:
            yield tidings, sink, receiver, env
        finally:
            await store.close()


async def test_worker_killed_after_the_providers_accepted(
    setup: tuple[Tidings, SmtpSink, WebhookReceiver, dict[str, str]], tmp_path: Path
) -> None:
    tidings, sink, receiver, env = setup
    await tidings.upsert_user(
        User(id="kim", email="kim@example.com", webhook_url=f"{receiver.url}/hook")
    )
    await tidings.register_template(
        {
            "id": "crash",
            "channels": ["email", "webhook", "in_app"],
            "content": {"subject": "Crash {{ n }}", "text": "body {{ n }}"},
            "sample_data": {"n": 0},
        }
    )
    # Both providers keep what they receive but answer only after a minute: the worker is
    # killed inside that window, after acceptance and before the activity completes.
    sink.hold_replies(60)
    receiver.slow_next(60)

    worker = await _start_worker(env, tmp_path)
    ref = await tidings.notify(user_id="kim", template_id="crash", data={"n": 1})
    async with asyncio.timeout(30):
        while not (sink.messages and receiver.received):
            await asyncio.sleep(0.05)
    killed_at = asyncio.get_running_loop().time()
    os.killpg(worker.pid, signal.SIGKILL)
    await worker.wait()
    retried = {
        Channel.EMAIL: asyncio.create_task(_arrival(lambda: len(sink.messages) >= 2, killed_at)),
        Channel.WEBHOOK: asyncio.create_task(
            _arrival(lambda: len(receiver.received) >= 2, killed_at)
        ),
    }

    restarted = await _start_worker(env, tmp_path)
    try:
        result = await tidings.wait_sent(ref.notification_id, within=120)
        async with asyncio.timeout(10):
            delays = {channel: await task for channel, task in retried.items()}
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        await restarted.wait()

    assert result.status is NotificationStatus.SENT
    statuses = {c.channel: c.status for c in result.channels}
    assert statuses == {
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.WEBHOOK: DeliveryStatus.DELIVERED,
        Channel.IN_APP: DeliveryStatus.DELIVERED,
    }
    # At-least-once, and the duplicate is recognisable by its stable id.
    assert len(sink.messages) == 2
    assert len({m.message_id for m in sink.messages}) == 1
    assert len(receiver.received) == 2
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    # Effectively-once.
    assert len(await tidings.inbox("kim")) == 1
    handle = tidings.temporal.get_workflow_handle(ref.workflow_id)
    heartbeat_timeouts = await _heartbeat_timeouts(handle)
    await handle.terminate("test finished")

    print(
        "\nretried after kill -9: "
        + ", ".join(f"{c.value} {d:.1f} s" for c, d in delays.items())
        + f" (heartbeat timeout {HEARTBEAT_TIMEOUT.total_seconds():g} s,"
        f" attempt timeouts {ATTEMPT_TIMEOUTS[Channel.EMAIL].total_seconds():g} s)"
    )
    assert heartbeat_timeouts == {HEARTBEAT_TIMEOUT.total_seconds()}
    for channel, delay in delays.items():
        # Retried within the heartbeat timeout, not the attempt timeout.
        assert delay < _retry_bound(channel).total_seconds(), (channel, delay)
