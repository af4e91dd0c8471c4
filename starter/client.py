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
from collections.abc import Sequence
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
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starter.client_analytics import AnalyticsClient
from starter.client_broadcasts import BroadcastsMixin
from starter.client_bulk import (
    MAX_BULK,
    BulkMixin,
    BulkResult,
    NotificationRef,
    Recipient,
    optimal_window_end,
)
from starter.client_digests import DigestsClient
from starter.client_inbox import InboxClient, InboxToken
from starter.client_schedules import SchedulesClient
from starter.client_tracking import TrackingMixin
from tidings import api_keys, idempotency, rendering, targets
from tidings.api_keys import ApiKey, CreatedApiKey, Scope
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.experiments import ExperimentConfig, Variant, config_error, parse_config
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
from tidings.store.experiments import ExperimentRecord
from tidings.store.notifications import RecordedEvent
from workflows import search_attributes as sa
from workflows.connect import connect as connect_temporal
from workflows.experiment import BUSY, FINISHED, ExperimentWorkflow
from workflows.io import (
    CancelInput,
    EngagementSignal,
    EnrollInput,
    Enrollment,
    ExperimentInput,
    ExperimentResults,
    NotificationInput,
    RescheduleInput,
    StopInput,
)
from workflows.notification import NotificationWorkflow
from workflows.queues import experiment_workflow_id, workflow_id, workflow_queue

_NO_DIGEST = "0" * 64  # compared against when a key's id is unknown


class ExperimentRef(BaseModel):
    experiment_id: str
    workflow_id: str


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
        user = await self.store.get_user(req.user_id)
        if user is None:
            raise InvalidRequest("user_id", f"no user {req.user_id!r}")
        template = template or await self.store.get_template(req.template_id)
        if template is None:
            raise InvalidRequest("template_id", f"no template {req.template_id!r}")
        for channel in [*(req.channels or []), *(req.fallback or [])]:
            if channel not in template.channels:
                supported = ", ".join(c.value for c in template.channels)
                raise InvalidRequest(
                    "channels" if channel in (req.channels or []) else "fallback",
                    f"template {template.id!r} does not support {channel.value}"
                    f" (it supports {supported})",
                )
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
            await self._start_workflow(prepared, wf_id)
        except WorkflowAlreadyStartedError:
            # A run that finished earlier with the same key: the same notification.
            created = False
        return NotificationRef(
            notification_id=prepared.notification_id, workflow_id=wf_id, created=created
        )

    async def _start_workflow(self, prepared: NotificationInput, wf_id: str) -> None:
        req = prepared.request
        await self.temporal.start_workflow(
            NotificationWorkflow.run,
            prepared,
            id=wf_id,
            task_queue=workflow_queue(self.settings.task_queue, prepared.priority),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.USER, req.user_id),
                    SearchAttributePair(sa.TEMPLATE, req.template_id),
                    SearchAttributePair(sa.PRIORITY, prepared.priority.value),
                    SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
                    SearchAttributePair(sa.CHANNELS, [c.value for c in req.channels or []]),
                ]
            ),
            static_summary=(
                f"{req.template_id} v{prepared.template_version} to {req.user_id}"
                f" ({prepared.priority.value})"
            ),
        )

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

    # --- API keys -------------------------------------------------------------------------------

    async def create_api_key(self, name: str, scopes: Sequence[Scope | str]) -> CreatedApiKey:
        """A new key with these scopes. The key is in the result once and never stored."""
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidRequest("name", "give a name of 1 to 128 characters")
        try:
            chosen = api_keys.normalise_scopes(scopes)
        except ValueError as e:
            raise InvalidRequest("scopes", str(e)) from e
        new = api_keys.generate()
        stored = await self.store.add_api_key(new, name, chosen)
        return CreatedApiKey(api_key=stored, key=new.key)

    async def list_api_keys(self) -> list[ApiKey]:
        return await self.store.list_api_keys()

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key: this process refuses it from its next request, every other API process
        within `key_cache.TTL_SECONDS` (1 s). Revoking a revoked key is not an error."""
        if await self.store.api_key_with_digest(key_id) is None:
            raise NotFound("API key", key_id)
        await self.store.revoke_api_key(key_id)
        self._verified_keys.forget(key_id)

    async def authenticate(self, key: str) -> ApiKey | None:
        """The live key this is, else None (unknown, malformed, revoked: the caller cannot tell
        which). A key verified in the last second is taken from memory (`tidings.key_cache`)."""
        cached = self._verified_keys.get(key)
        if cached is not None:
            return cached
        found_id = api_keys.key_id(key)
        found = await self.store.api_key_with_digest(found_id) if found_id else None
        # The digest is compared whether or not the id exists: the same work either way.
        record, stored_digest = found if found is not None else (None, _NO_DIGEST)
        if not api_keys.matches(key, stored_digest) or record is None:
            return None
        if record.revoked_at is not None:
            return None
        self._verified_keys.put(key, record)
        return record

    # --- stats ------------------------------------------------------------------------------------

    async def stats(self) -> ServiceStats:
        return await self.store.service_stats()

    # --- A/B tests -------------------------------------------------------------------------------

    async def create_experiment(
        self, config: ExperimentConfig | dict[str, Any], *, event_budget: int | None = None
    ) -> ExperimentRef:
        """Check the test against the store (templates exist, support the channels and render
        with the test's data), pin each variant's template version, record it and start its
        workflow. Creating the same test again returns it; a different one under the same id is
        a Conflict."""
        try:
            raw = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
            parsed = parse_config(raw)
        except ValidationError as e:
            raise InvalidRequest(*config_error(e)) from e
        window_hours = parsed.attribution_window.total_seconds() / 3600
        if window_hours > self.settings.engagement_window_hours:
            raise InvalidRequest(
                "attribution_window",
                f"{window_hours:g} h is longer than the engagement window"
                f" ({self.settings.engagement_window_hours:g} h), after which nothing is recorded",
            )
        variants = [
            await self._resolve_variant(parsed, i, v) for i, v in enumerate(parsed.variants)
        ]
        parsed = parsed.model_copy(update={"variants": variants})
        stored = parsed.model_dump(mode="json")
        if not await self.store.create_experiment(parsed.id, stored):
            existing = await self.store.get_experiment(parsed.id)
            if existing is None or existing.config != stored:
                raise Conflict(f"experiment {parsed.id!r} exists with a different configuration")
        wf_id = experiment_workflow_id(parsed.id)
        budget = {} if event_budget is None else {"event_budget": event_budget}
        # A test that ran before under this id (finished) is refused: ids are not reused.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.temporal.start_workflow(
                ExperimentWorkflow.run,
                ExperimentInput(
                    config=parsed,
                    task_queue_base=self.settings.task_queue,
                    engagement_window_hours=self.settings.engagement_window_hours,
                    **budget,
                ),
                id=wf_id,
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.EXPERIMENT, parsed.id)]
                ),
                static_summary=(
                    f"A/B test {parsed.id}: {len(parsed.variants)} variants,"
                    f" {parsed.rule.value}, {parsed.metric.value}"
                ),
            )
        return ExperimentRef(experiment_id=parsed.id, workflow_id=wf_id)

    async def _resolve_variant(self, config: ExperimentConfig, i: int, v: Variant) -> Variant:
        field = f"variants[{i}]"
        template_id = v.template_id or config.template_id
        # A version given is kept (a broadcast's experiment pins its variants' versions).
        template = await self.store.get_template(template_id or "", v.template_version)
        if template is None and v.template_version is not None:
            raise InvalidRequest(
                f"{field}.template_version",
                f"template {template_id!r} has no version {v.template_version}",
            )
        if template is None:
            name = "template_id" if v.template_id else "template_id (the experiment's)"
            raise InvalidRequest(f"{field}.{name}", f"no template {template_id!r}")
        for channel in v.channels or []:
            if channel not in template.channels:
                raise InvalidRequest(
                    f"{field}.channels",
                    f"template {template.id!r} does not support {channel.value}",
                )
        data = {**template.sample_data, **config.data, **(v.data or {})}
        for channel in v.channels or template.channels:
            try:
                await rendering.render_async(template, channel, data)
            except rendering.TemplateError as e:
                raise InvalidRequest(f"{field}.data", f"{e.reason} ({e.field})") from e
        return v.model_copy(
            update={
                "template_id": template.id,
                "template_version": template.version,
                "priority": template.default_priority,
                "fallback": template.fallback,
            }
        )

    async def _experiment(self, experiment_id: str) -> tuple[ExperimentRecord, ExperimentConfig]:
        record = await self.store.get_experiment(experiment_id)
        if record is None:
            raise NotFound("experiment", experiment_id)
        return record, ExperimentConfig.model_validate(record.config)

    def _experiment_handle(self, experiment_id: str) -> WorkflowHandle[Any, ExperimentResults]:
        return self.temporal.get_workflow_handle_for(
            ExperimentWorkflow.run, experiment_workflow_id(experiment_id)
        )

    async def enroll(
        self, experiment_id: str, user_id: str, *, data: dict[str, Any] | None = None
    ) -> Enrollment:
        """Put a user in the test: their arm (or `holdout`) and the notification sent them. The
        same user again gets the first enrolment back, and nothing is sent again."""
        record, config = await self._experiment(experiment_id)
        data = data or {}
        try:
            request = NotificationRequest(user_id=user_id, template_id="x", data=data)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        user = await self.store.get_user(request.user_id)
        if user is None:
            raise InvalidRequest("user_id", f"no user {user_id!r}")
        for v in config.variants:  # the user may get any of them
            template = await self.store.get_template(v.template_id or "", v.template_version)
            if template is None:
                raise InvalidRequest("experiment", f"template {v.template_id!r} has gone")
            merged = {**config.data, **(v.data or {}), **data}
            for channel in v.channels or template.channels:
                try:
                    await rendering.render_async(template, channel, merged, locale=user.locale)
                except rendering.TemplateError as e:
                    raise InvalidRequest("data", f"{e.reason} (variant {v.name}, {e.field})") from e
        handle = self._experiment_handle(experiment_id)
        arg = EnrollInput(user_id=user_id, data=data)
        result: Enrollment = await self._experiment_update(
            handle, record, "enroll", arg, Enrollment
        )
        return result

    async def _experiment_update(
        self,
        handle: WorkflowHandle[Any, ExperimentResults],
        record: ExperimentRecord,
        name: str,
        arg: BaseModel,
        result_type: type[M],
    ) -> M:
        delay = 0.05
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                result: M = await handle.execute_update(name, arg, result_type=result_type)
                return result
            except WorkflowUpdateFailedError as e:
                cause = e.cause
                busy = isinstance(cause, ApplicationError) and cause.type == BUSY
                if busy and loop.time() < deadline:  # handing over to its next run
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                if isinstance(cause, ApplicationError) and cause.type == "InvalidRequest":
                    field, _, reason = message.partition(": ")
                    raise InvalidRequest(field, reason) from e
                if isinstance(cause, ApplicationError) and cause.type == FINISHED:
                    raise Conflict(message) from e
                raise Conflict(f"experiment {record.id}: {message}") from e
            except RPCError as e:
                description = await self._describe(handle)
                if description is WorkflowExecutionStatus.RUNNING:
                    # An update admitted while the run continued as new is aborted, not
                    # executed; the next run takes it.
                    if loop.time() < deadline:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    raise
                current = await self.store.get_experiment(record.id) or record
                ending = current.ending or "ended"
                raise Conflict(
                    f"cannot {name}: experiment {record.id} has finished ({ending})"
                    + (f": {current.reason}" if current.reason else "")
                ) from e

    async def _describe(self, handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
        try:
            return (await handle.describe()).status
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def experiment_results(self, experiment_id: str) -> ExperimentResults:
        """What the parent decided on: live while the test runs, else its recorded outcome."""
        record, config = await self._experiment(experiment_id)
        with contextlib.suppress(RPCError):
            result: ExperimentResults = await self._experiment_handle(experiment_id).query(
                ExperimentWorkflow.results
            )
            return result
        if record.outcome is not None:
            return ExperimentResults.model_validate(record.outcome)
        return ExperimentResults(
            experiment_id=config.id,
            status=record.status,
            rule=config.rule,
            metric=config.metric,
            alpha=config.alpha,
            started_at=record.created_at,
        )

    async def stop_experiment(
        self, experiment_id: str, reason: str = "stopped by hand"
    ) -> ExperimentResults:
        record, _ = await self._experiment(experiment_id)
        try:
            arg = StopInput(reason=reason)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        handle = self._experiment_handle(experiment_id)
        return await self._experiment_update(handle, record, "stop", arg, ExperimentResults)

    async def list_experiments(self, *, limit: int = 100) -> list[ExperimentRecord]:
        return await self.store.list_experiments(limit=limit)


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
