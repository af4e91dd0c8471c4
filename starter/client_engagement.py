"""Engagement in the Python API: what a user did with a notification (`engage` signals the
run; `record_event` writes the row and signals only while the window may be open) and provider
delivery receipts. A mixin of `starter.client.Tidings`."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from starter.client_parse import parse_model as _parse
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.models import (
    AttributeValue,
    Channel,
    ChannelResult,
    EngagementEvent,
    EngagementReport,
    EngagementType,
    NotificationResult,
    NotificationStatus,
    engagement_key,
)
from tidings.receipts import DeliveryReceipt
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.notifications import RecordedEvent
from workflows.io import EngagementSignal
from workflows.notification import NotificationWorkflow


class EventRecorded(BaseModel):
    """The answer to `record_event`: `duplicate` when the same event was recorded before
    (nothing changed)."""

    notification_id: str
    type: EngagementType
    duplicate: bool


class EngagementMixin:
    settings: Settings
    store: Store
    temporal: Client

    if TYPE_CHECKING:  # provided by Tidings and its other mixins

        async def now(self) -> datetime: ...

        def _handle(self, notification_id: str) -> WorkflowHandle[Any, NotificationResult]: ...

        async def sync_read(self, notification_id: str) -> None: ...

        async def _record_delivered(
            self, receipt: DeliveryReceipt, applied: ChannelResult, at: datetime
        ) -> None: ...

    async def engage(
        self,
        notification_id: str,
        type: EngagementType | str,
        *,
        channel: Channel | None = None,
        metadata: dict[str, AttributeValue] | None = None,
        event_id: str | None = None,
    ) -> None:
        """Record what the user did. An event counts once: repeats of the same `event_id`, or
        without one of the same type and channel, are accepted and change nothing."""
        signal = _parse(
            EngagementSignal,
            {"type": type, "channel": channel, "metadata": metadata or {}, "event_id": event_id},
        )
        if signal.type is EngagementType.DELIVERED:
            raise InvalidRequest("type", "delivered is recorded with record_event, not signalled")
        handle = self._handle(notification_id)
        try:
            description = await handle.describe()
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                raise NotFound("notification", notification_id) from e
            raise
        if description.status is WorkflowExecutionStatus.RUNNING:
            current = await handle.query(NotificationWorkflow.status)
            if current.status is not NotificationStatus.SENT:
                raise Conflict(
                    f"{notification_id}: engagement is accepted after delivery;"
                    f" the notification is {current.status.value}"
                )
            try:
                await handle.signal(NotificationWorkflow.engagement, signal)
                return
            except RPCError as e:
                # The window closed between the look and the signal.
                if e.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    raise
        key = engagement_key(signal.type, signal.channel, signal.event_id)
        if await self.store.has_engagement(notification_id, key):
            return  # a repeat of an event recorded while the window was open
        raise Conflict(f"{notification_id}: its engagement window has closed")

    async def record_event(
        self, notification_id: str, report: EngagementReport | dict[str, Any]
    ) -> EventRecorded:
        """Record what the user did with a sent notification: one database write, then at most
        one signal, and only while the run may still be inside its engagement window (judged
        from the database, not by asking Temporal). Events after the window are recorded and
        counted all the same; a repeat (the same `event_id`, or without one the same type and
        channel) answers `duplicate` and changes nothing."""
        report = _parse(EngagementReport, report)
        event = report.event(notification_id)
        # One time for the row and the run, on the clock the runs see.
        event.at = event.at or await self.now()
        try:
            recorded = await self.store.record_event(event)
        except LookupError as e:
            raise NotFound("notification", notification_id) from e
        if recorded.status not in (NotificationStatus.SENDING, NotificationStatus.SENT):
            raise Conflict(
                f"{notification_id}: engagement is accepted after delivery;"
                f" the notification is {recorded.status.value}"
            )
        # `delivered` is not signalled (see EngagementType). The window runs from the first
        # delivery, which the run wrote on its own clock (the one `now()` reads); with nothing
        # delivered yet it has not started. A run given a longer window of its own is not
        # signalled after the default one: its events are still recorded and counted. When the
        # row says the window is closed there is no RPC at all.
        if (
            recorded.new
            and event.type is not EngagementType.DELIVERED
            and self._window_open(recorded, await self.now())
        ):
            await self._signal_recorded(notification_id, event)
        if recorded.new and event.type is EngagementType.OPENED:
            await self.sync_read(notification_id)  # cross-channel read sync (client_inbox)
        return EventRecorded(
            notification_id=notification_id, type=event.type, duplicate=not recorded.new
        )

    def _window_open(self, recorded: RecordedEvent, now: datetime) -> bool:
        """Whether the run may still take an event, judged from the database row alone."""
        window = timedelta(hours=self.settings.engagement_window_hours)
        return recorded.delivered_at is None or now < recorded.delivered_at + window

    async def _signal_recorded(self, notification_id: str, event: EngagementEvent) -> None:
        signal = EngagementSignal(
            type=event.type,
            channel=event.channel,
            at=event.at,
            metadata=event.metadata,
            event_id=event.event_id,
            recorded=True,
        )
        try:
            await self._handle(notification_id).signal(NotificationWorkflow.engagement, signal)
        except RPCError as e:
            # The run ended since the row was written: the event is recorded all the same.
            if e.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise

    async def find_send(self, channel: Channel, provider_message_id: str) -> str | None:
        """The notification whose `channel` send a provider knows by this message id."""
        return await self.store.find_by_provider_id(channel, provider_message_id)

    async def record_receipt(self, receipt: DeliveryReceipt) -> ChannelResult | None:
        """Apply an authenticated provider receipt: `sent` -> `delivered`/`failed`. Returns the
        updated channel, or None when nothing changed (unknown, or already settled)."""
        updated = await self.store.apply_receipt(receipt)
        if updated is None:
            return None
        await self._record_delivered(receipt, updated, await self.now())
        with contextlib.suppress(RPCError):  # the run may have finished: the database suffices
            await self._handle(receipt.notification_id).signal(
                NotificationWorkflow.receipt, receipt
            )
        return updated
