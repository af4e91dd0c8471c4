"""Activities of NotificationWorkflow: thin adapters from the workflow to `tidings.*`.

One class holds the long-lived dependencies (store, senders) built once by the worker; its bound
methods are the registered activities. Each unpacks its input, calls one domain function and maps
the domain's typed errors to ApplicationError (see `activities.errors`): the policy lives in
`tidings.planning`, the send protocol in `tidings.delivery`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from temporalio import activity

from activities.errors import classified
from activities.heartbeat import DEFAULT_EVERY, heartbeating
from activities.io import (
    DeliverInput,
    DeliverOutput,
    PlanInput,
    PlanResult,
    RecordChannelInput,
    RecordInput,
)
from tidings import delivery, planning
from tidings.channels.base import ChannelSender
from tidings.frequency import FrequencyCaps
from tidings.models import Channel, EngagementEvent
from tidings.settings import Settings
from tidings.store import Store

log = logging.getLogger(__name__)


class NotificationActivities:
    def __init__(
        self,
        store: Store,
        senders: Mapping[Channel, ChannelSender],
        caps: FrequencyCaps | None = None,
        heartbeat_every: float = DEFAULT_EVERY,
        settings: Settings | None = None,
    ) -> None:
        self._store = store
        self._senders = dict(senders)
        self._caps = caps or FrequencyCaps()
        self._heartbeat_every = heartbeat_every
        self._settings = settings  # tracking: public_base_url and the signing secret

    @property
    def store(self) -> Store:
        return self._store

    @property
    def senders(self) -> Mapping[Channel, ChannelSender]:
        return self._senders

    @property
    def caps(self) -> FrequencyCaps:
        return self._caps

    @activity.defn(name="record_notification")
    async def record_notification(self, input: RecordInput) -> None:
        await self._store.upsert_notification(
            notification_id=input.notification_id,
            user_id=input.user_id,
            template_id=input.template_id,
            template_version=input.template_version,
            priority=input.priority,
            status=input.status,
            send_at=input.send_at,
            reason=input.reason,
            channels=input.channels,
            experiment_id=input.experiment_id,
            variant=input.variant,
        )

    @activity.defn(name="record_channel")
    async def record_channel(self, input: RecordChannelInput) -> None:
        await self._store.upsert_delivery(input.notification_id, input.result)

    @activity.defn(name="record_engagement")
    async def record_engagement(self, event: EngagementEvent) -> bool:
        return await self._store.record_engagement(event)

    @activity.defn(name="plan_delivery")
    async def plan_delivery(self, input: PlanInput) -> PlanResult:
        request = planning.PlanRequest(
            notification_id=input.notification_id,
            user_id=input.user_id,
            template_id=input.template_id,
            template_version=input.template_version,
            priority=input.priority,
            not_before=input.not_before,
            requested_channels=input.requested_channels,
            fallback_channels=input.fallback_channels,
            optimal_latest=input.optimal_latest,
        )
        configured = self._senders.keys()
        with classified(f"plan {input.notification_id}"):
            if input.record is None:
                plan = await planning.plan_from_store(
                    self._store, request, configured=configured, caps=self._caps
                )
            else:
                record = planning.StatusRecord(
                    send_at=input.record.send_at,
                    experiment_id=input.record.experiment_id,
                    variant=input.record.variant,
                )
                plan = await planning.plan_and_record(
                    self._store, request, configured=configured, caps=self._caps, record=record
                )
        in_app = None
        sends_in_app = Channel.IN_APP in plan.channels and planning.sends_now(request, plan)
        if input.in_app is not None and input.record is not None and sends_in_app:
            deliver = input.in_app
            if deliver.finish and len(plan.channels) > 1:
                # In-app cannot land last: the record above has just written the other planned
                # channels `sending`, and their deliveries start only once the run has this
                # result. Asking would cost a statement that finds them so and writes nothing.
                deliver = deliver.model_copy(update={"finish": False})
            in_app = await self._deliver_in_app(deliver)
        return PlanResult(
            channels=plan.channels,
            suppressed=plan.suppressed,
            send_at=plan.send_at,
            fallback=plan.fallback,
            deferred_reason=plan.deferred_reason,
            send_time_reason=plan.send_time_reason,
            channel_reason=plan.channel_reason,
            in_app=in_app,
        )

    async def _deliver_in_app(self, input: DeliverInput) -> DeliverOutput | None:
        """In-app delivered by the plan's activity, right after the plan recorded it `sending`.
        None when the attempt raised: the run then sends in-app by its own local activity, with
        the channel's retries (the ledger keeps a retry from delivering twice)."""
        try:
            sent = await self._send(input)
        except Exception:
            log.warning("in-app with the plan of %s failed", input.notification_id, exc_info=True)
            return None
        if sent.duplicate:
            # An earlier execution of this plan delivered it (its worker died before the run
            # heard) and this plan's record has just set the row back to `sending`: as it was.
            await self._store.upsert_delivery(
                input.notification_id, sent.channel_result(Channel.IN_APP, input.scheduled_at)
            )
            sent.final_status = None  # read before the row was put back: the run writes it
        return sent

    @activity.defn(name="deliver")
    async def deliver(self, input: DeliverInput) -> DeliverOutput:
        return await self._send(input)

    async def _send(self, input: DeliverInput) -> DeliverOutput:
        """One attempt at the channel: the `deliver` activity's, or the plan's for in-app (the
        attempt is then the plan's)."""
        info = activity.info()
        request = delivery.SendRequest(
            notification_id=input.notification_id,
            channel=input.channel,
            user_id=input.user_id,
            template_id=input.template_id,
            template_version=input.template_version,
            data=input.data,
            priority=input.priority,
            expires_at=input.expires_at,
            record_attempt=info.attempt if input.record else None,
            finish=input.finish,
            # The server's clock when this attempt was scheduled: the run's "now", even on a
            # test server whose clock runs ahead of this host's. A local activity has the
            # field too, but from this host's clock (sdk-core: the first attempt's SystemTime),
            # so local sends carry the run's time in their input.
            render_at=input.scheduled_at or info.current_attempt_scheduled_time,
        )
        # A local activity (in-app, or the plan sending it) has no heartbeat timeout: the run's
        # own worker is sending it.
        beating: contextlib.AbstractAsyncContextManager[None] = (
            contextlib.nullcontext() if info.is_local else heartbeating(self._heartbeat_every)
        )
        with classified(f"deliver {input.channel.value} {input.notification_id}"):
            async with beating:
                sent = await delivery.send(
                    self._store, self._senders, request, settings=self._settings
                )
        return DeliverOutput(
            status=sent.acceptance.status,
            target=sent.acceptance.target,
            provider_message_id=sent.acceptance.provider_message_id,
            duplicate=sent.duplicate,
            attempt=info.attempt,
            final_status=sent.final_status,
        )
