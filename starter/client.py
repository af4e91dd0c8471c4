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
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
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
from starter.client_directory import DirectoryMixin, UserDeleted
from starter.client_engagement import EngagementMixin, EventRecorded
from starter.client_experiments import ExperimentRef, ExperimentsMixin
from starter.client_inbox import InboxClient, InboxToken
from starter.client_parse import parse_model as _parse
from starter.client_schedules import SchedulesClient
from starter.client_tracking import TrackingMixin
from tidings import idempotency, rendering
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.key_cache import VerifiedKeys
from tidings.models import (
    NotificationRequest,
    NotificationResult,
    NotificationStatus,
    Priority,
    ServiceStats,
    Template,
    check_horizon,
)
from tidings.settings import Settings
from tidings.store import Store
from workflows.connect import connect as connect_temporal
from workflows.io import (
    CancelInput,
    Enrollment,
    ExperimentResults,
    NotificationInput,
    RescheduleInput,
)
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id
from workflows.starts import start_notification


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
    DirectoryMixin,
    EngagementMixin,
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
                raise InvalidRequest("data", e.of_template(template.id)) from e
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

    # --- stats ------------------------------------------------------------------------------------

    async def stats(self) -> ServiceStats:
        return await self.store.service_stats()


__all__ = [
    "MAX_BULK",
    "BulkResult",
    "Enrollment",
    "EventRecorded",
    "ExperimentRef",
    "ExperimentResults",
    "InboxToken",
    "NotificationRef",
    "Priority",
    "Recipient",
    "Tidings",
    "UserDeleted",
]
