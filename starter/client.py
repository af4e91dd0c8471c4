"""The Python API for application code.

    async with await Tidings.connect() as tidings:
        await tidings.upsert_user(User(id="u1", email="a@example.com"))
        ref = await tidings.notify(user_id="u1", template_id="welcome", data={...})

Every request is validated here, at the edge, against the store (user, template, rendering with
the caller's data) before a workflow starts, so bad input is a clear `InvalidRequest` and never a
workflow stuck retrying a task. The database is the read model; Temporal holds in-flight state.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starter.client_analytics import AnalyticsClient
from starter.client_api_keys import ApiKeysMixin
from starter.client_broadcasts import BroadcastsMixin
from starter.client_bulk import (
    MAX_BULK,
    BulkMixin,
    BulkResult,
    NotificationRef,
    Recipient,
)
from starter.client_bulk_checks import check_channels, optimal_window_end
from starter.client_digests import DigestsClient
from starter.client_experiments import ExperimentRef, ExperimentsMixin
from starter.client_inbox import InboxClient, InboxToken
from starter.client_schedules import SchedulesClient
from starter.client_tracking import TrackingMixin
from tidings import idempotency, rendering, targets
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.key_cache import VerifiedKeys
from tidings.models import (
    AttributeValue,
    Channel,
    ChannelResult,
    Device,
    EngagementEvent,
    EngagementReport,
    EngagementType,
    NotificationRequest,
    NotificationResult,
    NotificationStatus,
    Platform,
    Preferences,
    Priority,
    ServiceStats,
    Template,
    TemplateDefinition,
    User,
    check_horizon,
    engagement_key,
)
from tidings.receipts import DeliveryReceipt
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.notifications import RecordedEvent
from workflows import search_attributes as sa
from workflows.connect import connect as connect_temporal
from workflows.io import (
    CancelInput,
    EngagementSignal,
    Enrollment,
    ExperimentResults,
    NotificationInput,
    RescheduleInput,
)
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id
from workflows.starts import start_notification


class EventRecorded(BaseModel):
    """The answer to `record_event`: `duplicate` when the same event was recorded before
    (nothing changed)."""

    notification_id: str
    type: EngagementType
    duplicate: bool


class UserDeleted(BaseModel):
    user_id: str
    cancelled: list[str]  # the notifications that were pending and are now cancelled


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], value: M | dict[str, Any], prefix: str = "") -> M:
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidRequest.from_validation(e, prefix) from e


def _fingerprint(prepared: NotificationInput) -> str:
    return idempotency.fingerprint(prepared.request)


def _reused(key: str) -> Conflict:
    return Conflict(
        f"idempotency key {key!r} was already used for a different request;"
        " use a new key, or send the same request to get the same notification",
        field="idempotency_key",
    )


def _check_horizon(value: datetime | None, field: str, now: datetime) -> None:
    if value is None:
        return
    try:
        check_horizon(value, now)
    except ValueError as e:
        raise InvalidRequest(field, str(e)) from e


class Tidings(
    InboxClient,
    TrackingMixin,
    AnalyticsClient,
    BroadcastsMixin,
    BulkMixin,
    DigestsClient,
    SchedulesClient,
    ExperimentsMixin,
    ApiKeysMixin,
):
    def __init__(self, settings: Settings, store: Store, temporal: Client) -> None:
        self.settings = settings
        self.store = store
        self.temporal = temporal
        self._verified_keys = VerifiedKeys()

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        temporal: Client | None = None,
        store: Store | None = None,
    ) -> Tidings:
        settings = settings or Settings()
        store = store or await Store.open(settings.resolved_database_url)
        temporal = temporal or await connect_temporal(settings)
        return cls(settings, store, temporal)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Tidings:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- users, devices, preferences, templates --------------------------------------------------

    async def upsert_user(self, user: User | dict[str, Any]) -> User:
        parsed = _parse(User, user)
        self._check_targets(parsed)
        return await self.store.upsert_user(parsed)

    def _check_targets(self, user: User) -> None:
        """Webhook and Slack URLs must reach public addresses (`tidings.targets`); the worker
        checks again after resolving the name, when it sends."""
        policy = self.settings.webhook_target_policy
        named = [("webhook_url", user.webhook_url)]
        named += [(f"webhook_urls[{i}]", u) for i, u in enumerate(user.webhook_urls)]
        named += [("slack_webhook_url", user.slack_webhook_url)]
        for field, url in named:
            if url is None:
                continue
            try:
                targets.check_url(str(url), policy)
            except targets.TargetRefused as e:
                raise InvalidRequest(field, str(e)) from e

    async def get_user(self, user_id: str) -> User:
        user = await self.store.get_user(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def delete_user(self, user_id: str) -> UserDeleted:
        """Cancel the user's notifications that have not been sent, then remove their personal
        data (tidings.store.users.ErasureMixin.erase_user). Runs still inside their engagement
        window keep only the encrypted payloads they were started with."""
        await self.get_user(user_id)
        pending = set(await self.store.pending_notification_ids(user_id))
        with contextlib.suppress(RPCError):  # visibility: servers without it have the store
            query = f'{sa.USER.name} = "{user_id}" AND ExecutionStatus = "Running"'
            async for run in self.temporal.list_workflows(query):
                pending.add(run.id.removeprefix("notification/"))
        cancelled = []
        for notification_id in sorted(pending):
            try:
                await self.cancel(notification_id, "the user was deleted")
                cancelled.append(notification_id)
            except (Conflict, NotFound):
                pass  # sent or finished meanwhile: nothing to cancel
        await self.store.erase_user(user_id)
        return UserDeleted(user_id=user_id, cancelled=cancelled)

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        return await self.store.list_users(limit=limit, offset=offset)

    async def add_device(self, device: Device | dict[str, Any]) -> Device:
        device = _parse(Device, device)
        await self.get_user(device.user_id)
        return await self.store.add_device(device)

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.store.list_devices(user_id)

    async def remove_device(self, platform: Platform, token: str) -> bool:
        return await self.store.remove_device(platform, token)

    async def set_preferences(self, preferences: Preferences | dict[str, Any]) -> Preferences:
        preferences = _parse(Preferences, preferences)
        await self.get_user(preferences.user_id)
        return await self.store.set_preferences(preferences)

    async def get_preferences(self, user_id: str) -> Preferences:
        await self.get_user(user_id)
        return await self.store.get_preferences(user_id)

    async def register_template(self, definition: TemplateDefinition | dict[str, Any]) -> Template:
        """Check syntax, sandbox rules and a render against `sample_data`, then store a new
        version (or return the current one if nothing changed)."""
        definition = _parse(TemplateDefinition, definition)
        try:
            await rendering.validate_template_async(definition)
        except rendering.TemplateError as e:
            raise InvalidRequest(e.field, e.reason) from e
        return await self.store.add_template_version(definition)

    async def get_template(self, template_id: str, version: int | None = None) -> Template:
        template = await self.store.get_template(template_id, version)
        if template is None:
            key = template_id if version is None else f"{template_id} v{version}"
            raise NotFound("template", key)
        return template

    async def list_templates(self) -> list[Template]:
        return await self.store.list_templates()

    # --- notifications ---------------------------------------------------------------------------

    async def notify(
        self, request: NotificationRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> NotificationRef:
        """Start one notification. An idempotency key used again with the same request returns
        the existing notification (`created` False); with a different request it is a Conflict
        naming the key (see `tidings.idempotency`)."""
        req = _parse(NotificationRequest, request if request is not None else fields)
        prepared = await self._prepare(req)
        return await self._start(prepared)

    async def now(self) -> datetime:
        """The time requests are judged against (past expiry, the scheduling horizon): the
        clock the runs see. In production that is the wall clock; a test stack on the
        time-skipping server, whose clock runs ahead, says so by overriding this."""
        return datetime.now(UTC)

    async def _prepare(
        self, req: NotificationRequest, template: Template | None = None
    ) -> NotificationInput:
        """Check one request; `template` is the latest version when the caller already has it."""
        now = await self.now()
        if req.expires_at is not None and req.expires_at <= now:
            raise InvalidRequest("expires_at", f"{req.expires_at.isoformat()} is in the past")
        for name in ("scheduled_at", "expires_at"):
            _check_horizon(getattr(req, name), name, now)
        optimal_latest = optimal_window_end(req, now)
        if template is None:  # one read for both
            user, template = await self.store.user_and_template(req.user_id, req.template_id)
        else:
            user = await self.store.get_user(req.user_id)
        if user is None:
            raise InvalidRequest("user_id", f"no user {req.user_id!r}")
        if template is None:
            raise InvalidRequest("template_id", f"no template {req.template_id!r}")
        check_channels(req, template)
        for channel in dict.fromkeys([*(req.channels or template.channels), *(req.fallback or [])]):
            try:
                await rendering.render_async(
                    template, channel, req.data, locale=user.locale, user=user, at=now
                )
            except rendering.TemplateError as e:
                raise InvalidRequest(
                    "data", f"{e.reason} (template {template.id}, {e.field})"
                ) from e
        return self._run_input(req, template, optimal_latest)

    async def _start(self, prepared: NotificationInput) -> NotificationRef:
        wf_id = workflow_id(prepared.notification_id)
        req = prepared.request
        created = True
        if req.idempotency_key is not None:
            # Claimed before the start: a crash between the two leaves a claim whose repeat
            # starts the workflow (USE_EXISTING makes that start idempotent).
            mine = _fingerprint(prepared)
            theirs = await self.store.claim_idempotency_key(prepared.notification_id, mine)
            if theirs is not None and theirs != mine:
                raise _reused(prepared.notification_id)
            created = theirs is None
        try:
            await self._start_workflow(prepared)
        except WorkflowAlreadyStartedError:
            # A run that finished earlier with the same key: the same notification.
            created = False
        return NotificationRef(
            notification_id=prepared.notification_id, workflow_id=wf_id, created=created
        )

    async def _start_workflow(self, prepared: NotificationInput) -> None:
        await start_notification(self.temporal, prepared)

    def _handle(self, notification_id: str) -> WorkflowHandle[Any, NotificationResult]:
        return self.temporal.get_workflow_handle_for(
            NotificationWorkflow.run, workflow_id(notification_id)
        )

    async def status(self, notification_id: str) -> NotificationResult:
        """Live state from the workflow while it runs (or its final state), else the database."""
        try:
            return await self._handle(notification_id).query(NotificationWorkflow.status)
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                raise
        stored = await self.store.get_notification(notification_id)
        if stored is None:
            raise NotFound("notification", notification_id)
        return stored

    async def wait_sent(self, notification_id: str, *, within: float = 30.0) -> NotificationResult:
        """Poll until the notification has left SCHEDULED/SENDING (for demos and scripts)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = await self.status(notification_id)
            if result.status not in (NotificationStatus.SCHEDULED, NotificationStatus.SENDING):
                return result
            if asyncio.get_running_loop().time() >= deadline:
                return result
            await asyncio.sleep(0.1)

    async def cancel(
        self, notification_id: str, reason: str = "cancelled by request"
    ) -> NotificationResult:
        return await self._update(notification_id, "cancel", CancelInput(reason=reason))

    async def reschedule(self, notification_id: str, at: datetime) -> NotificationResult:
        if at.tzinfo is None:
            raise InvalidRequest("at", "needs a timezone (e.g. 2026-12-01T09:00:00+00:00)")
        arg = _parse(RescheduleInput, {"at": at})  # the range check, before any arithmetic
        now = await self.now()
        if arg.at <= now:
            raise InvalidRequest("at", f"{at.isoformat()} is in the past")
        _check_horizon(arg.at, "at", now)
        return await self._update(notification_id, "reschedule", arg)

    async def _update(self, notification_id: str, name: str, arg: BaseModel) -> NotificationResult:
        handle = self._handle(notification_id)
        try:
            # By name: the typed form does not accept the async `cancel` handler's signature.
            result: NotificationResult = await handle.execute_update(
                name, arg, result_type=NotificationResult
            )
            return result
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise Conflict(f"{notification_id}: {message}") from e
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                await self.status(notification_id)  # NotFound if it never existed
                raise Conflict(f"{notification_id}: cannot {name}: it has finished") from e
            raise

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

    # --- stats ------------------------------------------------------------------------------------

    async def stats(self) -> ServiceStats:
        return await self.store.service_stats()


__all__ = [
    "MAX_BULK",
    "BulkResult",
    "Enrollment",
    "ExperimentRef",
    "ExperimentResults",
    "InboxToken",
    "NotificationRef",
    "Priority",
    "Recipient",
    "Tidings",
    "UserDeleted",
]
