"""With payload keys, the history Temporal stores holds ciphertext: a run's raw history has none
of the notification's data, while the client (with the keys) reads everything back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.support import Stack, running_stack
from tidings.models import NotificationStatus
from tidings.payload_keys import new_key_entry, parse_keys
from workflows.converter import with_keys
from workflows.io import NotificationInput
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id

NAME = "Zoltan-Plaintext-7731"
APP = "Quasar-Orders-5520"
EMAIL = "zoltan.private@example.com"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    converter = with_keys(parse_keys(new_key_entry("test")))
    client = Client(
        time_env.client.service_client,
        namespace=time_env.client.namespace,
        data_converter=converter,
    )
    async with running_stack(client, tmp_path) as s:
        await s.seed()
        await s.add_user("zoltan", email=EMAIL)
        yield s


async def test_history_holds_no_plaintext_of_the_notification(stack: Stack) -> None:
    ref = await stack.tidings.notify(
        user_id="zoltan",
        template_id="welcome",
        data={"app_name": APP, "user_name": NAME},
        channels=["email", "in_app"],
    )
    sent = await stack.tidings.wait_sent(ref.notification_id)
    assert sent.status is NotificationStatus.SENT

    handle = stack.tidings.temporal.get_workflow_handle(workflow_id(ref.notification_id))
    history = await handle.fetch_history()
    raw = History(events=history.events).SerializeToString()
    # Render, delivery and summary all went through Temporal; none of it is readable there.
    assert len(history.events) > 5
    for plaintext in (NAME, APP, EMAIL):
        assert plaintext.encode() not in raw, plaintext
    # What the user received, and what the client decodes, is the real text.
    [mail] = [m for m in stack.sink.messages if EMAIL in m.rcpt_tos]
    assert NAME in (mail.body() or "")
    started = history.events[0].workflow_execution_started_event_attributes
    [decoded] = await stack.tidings.temporal.data_converter.decode(
        started.input.payloads, [NotificationInput]
    )
    assert decoded.request.data["user_name"] == NAME
    # And a worker with the keys replays the encrypted history.
    replayer = Replayer(
        workflows=[NotificationWorkflow], data_converter=stack.tidings.temporal.data_converter
    )
    replay = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None
