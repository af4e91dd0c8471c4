"""Engagement events reported through the front door (`Tidings.record_event`): one row, at most
one signal, and the run keeps the event without writing it again. Time-skipping server, real
activities, real SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from starter.client import Tidings
from tests.support import Stack, running_stack
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.models import EngagementType, NotificationResult, NotificationStatus
from workflows.notification import EVENTS_RECORDED_PATCH

WELCOME = {"app_name": "MyApp", "user_name": "John"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def _sent(stack: Stack) -> str:
    ref = await stack.tidings.notify(
        user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    await _stored_as(stack, ref.notification_id, NotificationStatus.SENT)
    return ref.notification_id


async def _stored_as(stack: Stack, notification_id: str, status: NotificationStatus) -> None:
    """Events are judged by the database, which the run writes just after it acts."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        stored = await stack.store.get_notification(notification_id)
        if stored is not None and stored.status is status:
            return
        assert asyncio.get_running_loop().time() < deadline, f"never {status}: {stored}"
        await asyncio.sleep(0.05)


async def _history_counts(tidings: Tidings, notification_id: str) -> tuple[int, int, int]:
    """Signals, local-activity markers and EVENTS_RECORDED_PATCH markers in the run so far."""
    history = await tidings.temporal.get_workflow_handle(
        f"notification/{notification_id}"
    ).fetch_history()
    signals = local = patch = 0
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signals += 1
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            name = e.marker_recorded_event_attributes.marker_name
            local += name == "core_local_activity"
            details = e.marker_recorded_event_attributes.details
            patch += name == "core_patch" and EVENTS_RECORDED_PATCH in str(details)
    return signals, local, patch


async def _until(
    tidings: Tidings, notification_id: str, count: int, within: float = 20.0
) -> NotificationResult:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await tidings.status(notification_id)
        if len(result.engagement) >= count:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"never got there: {result}"
        await asyncio.sleep(0.05)


async def test_an_event_is_written_once_and_signalled_once(stack: Stack) -> None:
    nid = await _sent(stack)
    signals, local, _ = await _history_counts(stack.tidings, nid)
    report = {"type": "converted", "value": 12.5, "currency": "EUR", "event_id": "order-1"}
    first = await stack.tidings.record_event(nid, report)
    assert first.duplicate is False and first.type is EngagementType.CONVERTED
    for _ in range(3):
        assert (await stack.tidings.record_event(nid, report)).duplicate is True

    result = await _until(stack.tidings, nid, 1)
    assert [(e.type, e.event_id) for e in result.engagement] == [
        (EngagementType.CONVERTED, "order-1")
    ]
    stored = await stack.store.get_notification(nid)
    assert stored is not None and len(stored.engagement) == 1
    assert stored.engagement[0].metadata == {"value": 12.5, "currency": "EUR"}
    # The row and the run agree on when it happened.
    assert stored.engagement[0].at == result.engagement[0].at
    after_signals, after_local, patch = await _history_counts(stack.tidings, nid)
    assert after_signals == signals + 1  # the repeats never reached Temporal
    assert after_local == local  # the run did not write the event again
    assert patch == 1


async def test_an_event_after_the_window_is_recorded_without_a_signal(
    stack: Stack, time_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    nid = await _sent(stack)
    signals, _, _ = await _history_counts(stack.tidings, nid)
    later = await time_env.get_current_time() + timedelta(
        hours=stack.settings.engagement_window_hours + 1
    )

    async def after_the_window() -> object:
        return later

    monkeypatch.setattr(stack.tidings, "now", after_the_window)
    recorded = await stack.tidings.record_event(nid, {"type": "clicked", "event_id": "late"})
    assert recorded.duplicate is False
    assert (await _history_counts(stack.tidings, nid))[0] == signals
    stats = await stack.store.service_stats()
    assert stats.engagement[EngagementType.CLICKED] >= 1
    stored = await stack.store.get_notification(nid)
    assert stored is not None and [e.event_id for e in stored.engagement] == ["late"]


async def test_an_event_for_an_ended_run_is_still_recorded(stack: Stack) -> None:
    nid = await _sent(stack)
    await stack.tidings.temporal.get_workflow_handle(f"notification/{nid}").terminate("ended")
    recorded = await stack.tidings.record_event(nid, {"type": "opened", "channel": "in_app"})
    assert recorded.duplicate is False
    stored = await stack.store.get_notification(nid)
    assert stored is not None and [e.type for e in stored.engagement] == [EngagementType.OPENED]


async def test_events_are_refused_before_delivery_and_for_unknown_notifications(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    at = await time_env.get_current_time() + timedelta(days=2)
    ref = await stack.tidings.notify(
        user_id="user_002",
        template_id="welcome",
        data=WELCOME,
        channels=["in_app"],
        scheduled_at=at,
    )
    await _stored_as(stack, ref.notification_id, NotificationStatus.SCHEDULED)
    with pytest.raises(Conflict, match="after delivery"):
        await stack.tidings.record_event(ref.notification_id, {"type": "opened"})
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.engagement == []
    await stack.tidings.cancel(ref.notification_id)
    with pytest.raises(NotFound):
        await stack.tidings.record_event("never-started", {"type": "opened"})
    with pytest.raises(InvalidRequest, match="converted"):
        await stack.tidings.record_event(ref.notification_id, {"type": "opened", "value": 3})


async def test_delivered_is_recorded_once_and_never_signalled(stack: Stack) -> None:
    nid = await _sent(stack)
    signals, _, _ = await _history_counts(stack.tidings, nid)
    report = {"type": "delivered", "channel": "in_app"}
    first = await stack.tidings.record_event(nid, report)
    again = await stack.tidings.record_event(nid, report)
    assert (first.duplicate, again.duplicate) == (False, True)
    # Workers older than the `delivered` value could not decode it: the run is never told.
    assert (await _history_counts(stack.tidings, nid))[0] == signals
    assert (await stack.tidings.status(nid)).engagement == []
    stored = await stack.store.get_notification(nid)
    assert stored is not None and [e.type for e in stored.engagement] == [EngagementType.DELIVERED]
    with pytest.raises(InvalidRequest, match="type: delivered"):
        await stack.tidings.engage(nid, "delivered")
