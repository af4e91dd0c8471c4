"""NotificationWorkflow: one notification, from trigger to the end of its engagement window.

Deterministic orchestration only. Decisions (routing, quiet hours, rendering, sending) happen in
activities that call `tidings.*`; this class sequences them, waits durably, and answers the
`status` query, the `reschedule` / `cancel` updates and the `engagement` signal.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.io import (
        DeliverInput,
        DeliverOutput,
        PlanInput,
        PlanRecord,
        PlanResult,
        RecordChannelInput,
        RecordInput,
    )
    from activities.notification import NotificationActivities
    from tidings.models import (
        Channel,
        ChannelResult,
        DeliveryStatus,
        EngagementEvent,
        EngagementType,
        NotificationResult,
        NotificationStatus,
        engagement_key,
    )
    from tidings.receipts import DeliveryReceipt
    from tidings.routing import overall_status
    from workflows import search_attributes as sa
    from workflows.io import CancelInput, EngagementSignal, NotificationInput, RescheduleInput
    from workflows.policies import (
        ATTEMPT_TIMEOUTS,
        DEFAULT_DEADLINE,
        DEFAULT_RETRY,
        DELIVERY_DEADLINES,
        HEARTBEAT_TIMEOUT,
        LOCAL_RETRY,
        LOCAL_TIMEOUT,
        MAX_ENGAGEMENT_EVENTS,
        RETRY_POLICIES,
    )
    from workflows.queues import channel_queue


FALLBACK_PATCH = "fallback-and-escalation"
CANCEL_OUTCOME_PATCH = "cancel-returns-outcome"
LIVE_RECORDS_PATCH = "record-channels-as-they-land"
EVENTS_RECORDED_PATCH = "events-recorded-by-front-door"
OPTIMAL_PATCH = "send-time-optimal"
_WAITING = "waiting for send time"
LAST_CHANNEL_WITH_STATUS_PATCH = "last-channel-recorded-with-status"
# The plan records the status it decides and each channel's delivery writes its own row: two to
# four local activities less per run. Runs with this marker take every patch above that a new
# run would take (live records, the last channel with the status, fallback) without their own
# markers: one marker event per run instead of two or three.
FOLDED_RECORDS_PATCH = "records-folded-into-plan-and-deliver"
# The run's own records write only what the database does not have yet (the deliveries and the
# plan wrote the rest: with the facts kept by triggers, nothing needs the rewrite), and the
# Web UI's status is upserted once, when the run knows its outcome, not also at SENDING: each
# upsert is a visibility write on the server. Stands for FOLDED_RECORDS_PATCH (and the ones it
# stands for) on new runs: one marker, one TemporalChangeVersion upsert.
LEAN_RECORDS_PATCH = "records-only-what-changed"
# The in-app channel is one write to Tidings' own database: a task-queue hop (scheduled, started,
# completed, and the server's matching in between) buys it nothing, so the run's own Worker sends
# it as a local activity. Stands for LEAN_RECORDS_PATCH (and the ones it stands for) on new runs:
# one marker, one TemporalChangeVersion upsert.
IN_APP_LOCAL_PATCH = "in-app-delivered-locally"
# The first round's deliveries write the notification's final status in their own transaction
# when theirs is the last channel to land (decided in the database: either channel may land
# last), and the run skips its final record when that is all it had to write: one local activity
# (a marker event, a workflow-task round trip, a transaction) less per sent notification. Stands
# for IN_APP_LOCAL_PATCH (and the ones it stands for) on new runs: one marker, one
# TemporalChangeVersion upsert.
FINAL_BY_DELIVERY_PATCH = "final-status-by-last-delivery"
# The plan's local activity delivers in-app itself when it sends at once: the in-app local
# activity (its marker, its dispatch, the activation that takes its result, a read of the user
# the plan had just read) goes. While that plan runs, cancel and reschedule are refused: the
# plan may be sending. Stands for FINAL_BY_DELIVERY_PATCH (and the ones it stands for) on new
# runs: one marker, one TemporalChangeVersion upsert.
IN_APP_WITH_PLAN_PATCH = "in-app-delivered-with-plan"
_SUCCESS = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
_FAILED = DeliveryStatus.FAILED
_SEEN = (EngagementType.OPENED, EngagementType.CLICKED, EngagementType.CONVERTED)


@workflow.defn(name="NotificationWorkflow")
class NotificationWorkflow:
    @workflow.init
    def __init__(self, input: NotificationInput) -> None:
        # An update sent while no worker was polling is delivered in the run's first task,
        # before run() starts: everything a handler reads is set here.
        self._input = input
        self._status = NotificationStatus.SCHEDULED
        self._send_at: datetime | None = input.request.scheduled_at
        self._channels: list[ChannelResult] = []
        self._engagement: list[EngagementEvent] = []
        self._reason: str | None = None
        self._cancel_reason: str | None = None
        self._rescheduled = False
        self._delivered_at: datetime | None = None
        self._window_closed = False
        self._unrecorded = False  # status changed since the database last saw it
        self._live = False  # channels recorded as they land (LIVE_RECORDS_PATCH)
        self._engagement_keys: set[str] = set()
        self._engagement_dropped = 0  # outside the window, or past the cap
        self._receipts: dict[Channel, DeliveryReceipt] = {}  # arrived before their send landed
        self._send_time_reason: str | None = None  # send_at="optimal": what was chosen, why
        self._channel_reason: str | None = None
        self._optimised = False  # the optimal send time has been chosen (once per run)
        self._wait_summary = _WAITING
        self._first_round = False  # the plan's channels are being sent, nothing else
        self._folded = False  # FOLDED_RECORDS_PATCH: the plan and deliver activities record
        self._planned_at: datetime | None = None  # the last plan's not_before
        self._planned: list[Channel] = []  # the channels the plan recorded as sending
        self._lean = False  # LEAN_RECORDS_PATCH: records write only what changed
        self._in_app_local = False  # IN_APP_LOCAL_PATCH: in-app sent by a local activity
        self._by_delivery = False  # FINAL_BY_DELIVERY_PATCH: the last delivery may finish
        self._with_plan = False  # IN_APP_WITH_PLAN_PATCH: the plan delivers in-app
        self._planning = False  # a plan that may deliver is running: no cancel, no reschedule
        self._planned_in_app: DeliverOutput | None = None  # the plan's in-app delivery
        # The final status a first-round delivery's transaction wrote (FINAL_BY_DELIVERY_PATCH).
        self._final_written: NotificationStatus | None = None
        self._planned_send_at: datetime | None = None  # the send time the plan's record wrote
        # Each channel as the database has it, as far as this run knows (LEAN_RECORDS_PATCH).
        self._written: dict[Channel, ChannelResult] = {}

    # --- handlers -------------------------------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> NotificationResult:
        return self._result()

    @workflow.update(name="reschedule")
    def reschedule(self, input: RescheduleInput) -> NotificationResult:
        self._send_at = input.at
        self._rescheduled = True
        return self._result()

    @reschedule.validator
    def _validate_reschedule(self, input: RescheduleInput) -> None:
        self._require_waiting("reschedule")
        if input.at <= workflow.now():
            raise ValueError(f"at: {input.at.isoformat()} is in the past")
        expires_at = self._req.request.expires_at
        if expires_at is not None and input.at >= expires_at:
            raise ValueError(f"at: must be before the expiry {expires_at.isoformat()}")

    @workflow.update(name="cancel")
    async def cancel(self, input: CancelInput) -> NotificationResult:
        self._cancel_reason = input.reason
        # Answer with the outcome, not the state the request found: the run wakes, records the
        # cancellation and only then does the caller hear back. Runs recorded before this
        # answered at once; the patch keeps them replaying as they ran.
        if workflow.patched(CANCEL_OUTCOME_PATCH):
            await workflow.wait_condition(lambda: self._status is NotificationStatus.CANCELLED)
        return self._result()

    @cancel.validator
    def _validate_cancel(self, input: CancelInput) -> None:
        self._require_waiting("cancel")

    @workflow.signal(name="engagement")
    async def engagement(self, signal: EngagementSignal) -> None:
        # Signals cannot be refused, so the client checks first and says why; anything that
        # still arrives outside the window or past the cap is counted and dropped, never
        # recorded. Nothing is logged here: a process's log handler runs inside the sandbox,
        # where it may not be allowed to do what it does (read the clock, write a console).
        if self._delivered_at is None or self._window_closed:
            self._engagement_dropped += 1
            return
        key = engagement_key(signal.type, signal.channel, signal.event_id)
        if key in self._engagement_keys and (self._folded or workflow.patched(LIVE_RECORDS_PATCH)):
            return  # the same event again: it counts once
        if len(self._engagement) >= MAX_ENGAGEMENT_EVENTS:
            self._engagement_dropped += 1
            return
        self._engagement_keys.add(key)
        event = EngagementEvent(
            notification_id=self._req.notification_id,
            type=signal.type,
            channel=signal.channel,
            at=signal.at or workflow.now(),
            metadata=signal.metadata,
            event_id=signal.event_id,
        )
        self._engagement.append(event)
        # Only signals that say so skip the write, so older histories (no such signal) replay
        # without meeting the marker.
        if signal.recorded and workflow.patched(EVENTS_RECORDED_PATCH):
            return
        await workflow.execute_local_activity_method(
            NotificationActivities.record_engagement,
            event,
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )

    @workflow.signal(name="receipt")
    def receipt(self, receipt: DeliveryReceipt) -> None:
        """A provider's delivery receipt, already checked and written by the front door; this
        keeps the run's own view (status query, later records) in step with the database. A
        receipt can arrive before its channel's result has landed here: it waits for it."""
        applied = False
        for i, result in enumerate(self._channels):
            if result.channel is receipt.channel and result.status is DeliveryStatus.SENT:
                self._channels[i] = _settle(result, receipt)
                applied = True
                # The front door wrote the receipt: the row has it already.
                if self._written.get(receipt.channel) == result:
                    self._written[receipt.channel] = self._channels[i]
        if not applied:
            self._receipts[receipt.channel] = receipt
        if self._channels and self._status is not NotificationStatus.SENDING:
            self._status = overall_status(self._channels)

    # --- main -----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: NotificationInput) -> NotificationResult:
        # A run that plans at once records nothing before its plan: the plan's activity writes
        # the row. One that waits for a send time is in the database from the start.
        self._with_plan = workflow.patched(IN_APP_WITH_PLAN_PATCH)
        self._by_delivery = self._with_plan or workflow.patched(FINAL_BY_DELIVERY_PATCH)
        self._in_app_local = self._by_delivery or workflow.patched(IN_APP_LOCAL_PATCH)
        self._lean = self._in_app_local or workflow.patched(LEAN_RECORDS_PATCH)
        self._folded = self._lean or workflow.patched(FOLDED_RECORDS_PATCH)
        if not self._folded or (self._send_at is not None and self._send_at > workflow.now()):
            await self._record()

        plan = await self._wait_for_send_time()
        if plan is None:
            return await self._finish()

        self._reason = None  # a deferral's reason no longer applies
        self._channel_reason = plan.channel_reason
        # On lean runs the Web UI's status waits for the outcome (the row says `sending`).
        self._set_status(NotificationStatus.SENDING, upsert=not self._lean)
        suppressed = [
            ChannelResult(channel=c, status=DeliveryStatus.SUPPRESSED, reason=r)
            for c, r in plan.suppressed.items()
        ]
        # Each channel's result is recorded the moment it lands, so a webhook retrying for a
        # day does not hide the email that went out. Runs that started before this gathered
        # every channel first; the patch keeps them replaying as they ran.
        self._live = self._folded or workflow.patched(LIVE_RECORDS_PATCH)
        if self._live:
            self._channels = suppressed + [
                ChannelResult(channel=c, status=DeliveryStatus.SENDING) for c in plan.channels
            ]
            # The plan recorded this already when it decided to send at once; a send time that
            # came due while it planned (a deferral of a moment) is recorded here.
            assert self._planned_at is not None
            if not (self._folded and plan.send_at <= self._planned_at):
                await self._record()
            else:
                self._written = {c.channel: c for c in self._channels}
            self._first_round = True
            await asyncio.gather(*(self._send(c) for c in plan.channels))
            self._first_round = False
        else:
            self._channels = suppressed + [
                ChannelResult(channel=c, status=DeliveryStatus.SCHEDULED) for c in plan.channels
            ]
            sent = await asyncio.gather(*(self._deliver(c) for c in plan.channels))
            self._channels = suppressed + list(sent)
        # Fallback and escalation came after the first recorded histories; the patch marker keeps
        # runs that started before them replaying exactly as they ran.
        patched = plan.fallback and (self._folded or workflow.patched(FALLBACK_PATCH))
        fallback = plan.fallback if patched else []
        if fallback and not self._any_sent():
            await self._fall_back(fallback)
        self._set_status(overall_status(self._channels))
        if self._finished_by_delivery():
            self._unrecorded = False  # the last delivery's transaction wrote it
        else:
            await self._record()

        if self._status is NotificationStatus.SENT:
            self._delivered_at = workflow.now()
            minutes = input.request.escalate_after_minutes
            if fallback and minutes:
                await self._escalate(fallback, timedelta(minutes=minutes))
            await self._engagement_window(input.engagement_window_hours)
        return await self._finish()

    def _finished_by_delivery(self) -> bool:
        """Whether the database has exactly what the run's final record would write: a
        first-round delivery wrote the final status, the same one the run computes from its own
        channels, and nothing else is unwritten (a failed channel, a fallback or its reason, a
        send time changed since the plan wrote it). Otherwise the run writes it as before."""
        if self._final_written is None or self._final_written is not self._status:
            return False
        if self._reason is not None or self._send_at != self._planned_send_at:
            return False
        return all(self._written.get(c.channel) == c for c in self._channels)

    def _any_sent(self) -> bool:
        return any(c.status in _SUCCESS for c in self._channels)

    def _untried(self, channels: list[Channel]) -> list[Channel]:
        tried = {c.channel for c in self._channels if c.status is not DeliveryStatus.SUPPRESSED}
        return [c for c in channels if c not in tried]

    async def _fall_back(self, fallback: list[Channel]) -> None:
        """Every first-round channel failed for good: try the fallback order one at a time."""
        failed = ", ".join(c.channel.value for c in self._channels if c.status is _FAILED)
        for channel in self._untried(fallback):
            result = await self._send(channel, f"fallback after {failed} failed")
            if result.status in _SUCCESS:
                return

    async def _escalate(self, fallback: list[Channel], after: timedelta) -> None:
        """Delivered but not opened in time: send on the next fallback channel, once."""
        remaining = self._untried(fallback)
        if not remaining:
            return
        try:
            await workflow.wait_condition(
                lambda: any(e.type in _SEEN for e in self._engagement),
                timeout=after,
                timeout_summary="escalation: waiting for the notification to be opened",
            )
            return
        except TimeoutError:
            pass
        minutes = after.total_seconds() / 60
        await self._send(remaining[0], f"escalated: not opened within {minutes:g} min", always=True)
        self._set_status(overall_status(self._channels))
        await self._record()

    async def _wait_for_send_time(self) -> PlanResult | None:
        """Sleep until the send time; re-plan after each wake-up because preferences, quiet
        hours or a reschedule may have moved it. None when cancelled or expired instead."""
        expires_at = self._req.request.expires_at
        while True:
            target = max(self._send_at or workflow.now(), workflow.now())
            if expires_at is not None and target >= expires_at:
                if await self._sleep_until(expires_at) == "elapsed":
                    self._end_unsent(DeliveryStatus.EXPIRED, "expired before its send time")
                    return None
            elif await self._sleep_until(target) == "elapsed":
                plan = await self._plan()
                if plan is None:
                    return None
                if self._cancel_reason is not None:
                    self._end_unsent(DeliveryStatus.CANCELLED, self._cancel_reason)
                    return None
                if plan.send_time_reason is not None:
                    self._send_time_reason = plan.send_time_reason
                if plan.send_at <= workflow.now():
                    return plan
                # Quiet hours, a frequency cap or the optimal send time: defer, never drop.
                # The wait is this run's timer, named in the Web UI by what it waits for.
                self._send_at = plan.send_at
                self._reason = plan.deferred_reason
                optimal = plan.send_time_reason is not None
                self._wait_summary = (
                    f"waiting for the {plan.send_time_reason}" if optimal else _WAITING
                )
                if not self._folded:  # else the plan recorded the deferral
                    await self._record()
                continue
            if self._cancel_reason is not None:
                self._end_unsent(DeliveryStatus.CANCELLED, self._cancel_reason)
                return None
            self._wait_summary = _WAITING  # a reschedule replaces any optimal time
            await self._record()  # rescheduled: the new send time is visible in the database

    async def _sleep_until(self, when: datetime) -> str:
        self._rescheduled = False
        seconds = (when - workflow.now()).total_seconds()
        if seconds > 0:
            try:
                await workflow.wait_condition(
                    lambda: self._rescheduled or self._cancel_reason is not None,
                    timeout=seconds,
                    timeout_summary=self._wait_summary,
                )
            except TimeoutError:
                return "elapsed"
            return "interrupted"
        return "interrupted" if self._cancel_reason is not None else "elapsed"

    def _optimal_latest(self) -> datetime | None:
        """The end of the send-time window for the first plan of a send_at="optimal" run; the
        plans after its wait apply quiet hours and caps to the time it chose. Only optimal runs
        meet the patch marker, so every earlier history replays without it."""
        if self._optimised or self._req.request.send_at != "optimal":
            return None
        if not workflow.patched(OPTIMAL_PATCH):
            return None
        self._optimised = True
        return self._req.optimal_latest

    def _end_unsent(self, status: DeliveryStatus, reason: str) -> None:
        self._reason = reason
        self._set_status(NotificationStatus(status.value))

    async def _plan(self) -> PlanResult | None:
        req = self._req
        self._planned_at = workflow.now()
        record = None
        if self._folded:
            record = PlanRecord(
                send_at=self._send_at, experiment_id=req.experiment_id, variant=req.variant
            )
            self._planned_send_at = self._send_at
        in_app = None
        # Not when a cancel came in with the send time (the run then ends cancelled).
        wants = Channel.IN_APP in (req.request.channels or [Channel.IN_APP])
        if self._with_plan and wants and self._cancel_reason is None:
            in_app = self._deliver_input(Channel.IN_APP, first_round=True).model_copy(
                update={"scheduled_at": self._planned_at}
            )
            self._planning = True
        try:
            plan = await workflow.execute_local_activity_method(
                NotificationActivities.plan_delivery,
                PlanInput(
                    notification_id=req.notification_id,
                    user_id=req.request.user_id,
                    template_id=req.request.template_id,
                    template_version=req.template_version,
                    priority=req.priority,
                    requested_channels=req.request.channels,
                    fallback_channels=req.fallback,
                    not_before=self._planned_at,
                    optimal_latest=self._optimal_latest(),
                    record=record,
                    in_app=in_app,
                ),
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )
        except (ActivityError, ApplicationError) as e:
            self._planning = False
            # The user or template was deleted while we waited: nothing can be sent. That is a
            # business outcome recorded as FAILED, not a failed workflow. A local activity's
            # non-retryable failure arrives unwrapped; runs from before the patch failed on it.
            live = self._folded or workflow.patched(LIVE_RECORDS_PATCH)
            if isinstance(e, ApplicationError) and not live:
                raise
            self._reason = _reason(e) if isinstance(e, ActivityError) else e.message
            self._set_status(NotificationStatus.FAILED)
            return None
        self._planning = False
        if self._folded and plan.send_at <= self._planned_at:
            self._planned = list(plan.channels)
        self._planned_in_app = plan.in_app if in_app is not None else None
        return plan

    async def _send(
        self, channel: Channel, note: str | None = None, *, always: bool = False
    ) -> ChannelResult:
        """Deliver on one channel and put its result in place: the channel shows `sending`
        meanwhile and, on runs with live records, its row is written as soon as it lands.
        `note` becomes the reason when the send succeeded, or in any case with `always`."""
        if self._live and not any(c.channel is channel for c in self._channels):
            self._channels.append(ChannelResult(channel=channel, status=DeliveryStatus.SENDING))
        result = await self._deliver(channel)
        # On the folded path a delivery that went through wrote its own row as it landed.
        recorded = self._folded and result.status is not _FAILED
        noted = note is not None and (always or result.status in _SUCCESS)
        if noted:
            result.reason = note
        pending = self._receipts.pop(channel, None)
        if pending is not None and result.status is DeliveryStatus.SENT:
            result = _settle(result, pending)  # the front door wrote the receipt
        if recorded and not noted:
            self._written[channel] = result
        for i, current in enumerate(self._channels):
            if current.channel is channel and current.status is DeliveryStatus.SENDING:
                self._channels[i] = result
                break
        else:
            self._channels.append(result)
        if self._live and not recorded and not self._recorded_with_status_next(channel):
            await workflow.execute_local_activity_method(
                NotificationActivities.record_channel,
                RecordChannelInput(notification_id=self._req.notification_id, result=result),
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )
            self._written[channel] = result
        return result

    def _recorded_with_status_next(self, channel: Channel) -> bool:
        """The last of the plan's channels to land needs no record of its own when one of them
        got through: no fallback follows then, and the run records the overall status with
        every channel in this same workflow task. One local activity less per notification."""
        if not self._first_round or not self._any_sent():
            return False
        if any(c.status is DeliveryStatus.SENDING for c in self._channels):
            return False
        return self._folded or workflow.patched(LAST_CHANNEL_WITH_STATUS_PATCH)

    def _deliver_input(self, channel: Channel, *, first_round: bool) -> DeliverInput:
        req = self._req
        return DeliverInput(
            notification_id=req.notification_id,
            channel=channel,
            user_id=req.request.user_id,
            template_id=req.request.template_id,
            template_version=req.template_version,
            data=req.request.data,
            priority=req.priority,
            expires_at=req.request.expires_at,
            record=self._folded,
            # Only the first round can end the notification on its own: a fallback or an
            # escalation carries a reason the run writes.
            finish=self._by_delivery and first_round,
        )

    async def _deliver(self, channel: Channel) -> ChannelResult:
        req = self._req
        planned = self._planned_in_app if channel is Channel.IN_APP else None
        if planned is not None and self._first_round:
            self._planned_in_app = None
            return self._landed(channel, planned)
        deadline = DELIVERY_DEADLINES.get(channel, DEFAULT_DEADLINE)
        if req.request.expires_at is not None:
            deadline = min(deadline, req.request.expires_at - workflow.now())
        input = self._deliver_input(channel, first_round=self._first_round)
        start_to_close = ATTEMPT_TIMEOUTS.get(channel, timedelta(seconds=30))
        schedule_to_close = max(deadline, timedelta(seconds=1))
        retry_policy = RETRY_POLICIES.get(channel, DEFAULT_RETRY)
        summary = f"deliver {channel.value}"
        try:
            if channel is Channel.IN_APP and self._in_app_local:
                result: DeliverOutput = await workflow.execute_local_activity_method(
                    NotificationActivities.deliver,
                    input.model_copy(update={"scheduled_at": workflow.now()}),
                    start_to_close_timeout=start_to_close,
                    schedule_to_close_timeout=schedule_to_close,
                    retry_policy=retry_policy,
                    summary=summary,
                )
            else:
                result = await workflow.execute_activity_method(
                    NotificationActivities.deliver,
                    input,
                    task_queue=channel_queue(req.task_queue_base, channel, req.priority),
                    start_to_close_timeout=start_to_close,
                    # The deliver activity heartbeats while it sends: a worker killed mid-send
                    # is noticed within this, not at the end of the attempt timeout.
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    schedule_to_close_timeout=schedule_to_close,
                    retry_policy=retry_policy,
                    summary=summary,
                )
        except (ActivityError, ApplicationError) as e:
            # A local activity's non-retryable failure arrives unwrapped (only local sends raise
            # it bare): a failed channel all the same, never a failed run. It wrote nothing.
            return ChannelResult(
                channel=channel,
                status=DeliveryStatus.FAILED,
                reason=_reason(e) if isinstance(e, ActivityError) else e.message,
                at=workflow.now(),
            )
        return self._landed(channel, result)

    def _landed(self, channel: Channel, result: DeliverOutput) -> ChannelResult:
        if result.final_status is not None:
            self._final_written = result.final_status
        return result.channel_result(channel, workflow.now())

    async def _engagement_window(self, hours: float) -> None:
        assert self._delivered_at is not None
        remaining = self._delivered_at + timedelta(hours=hours) - workflow.now()
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: any(e.type is EngagementType.CONVERTED for e in self._engagement),
                timeout=max(remaining, timedelta(seconds=1)),
                timeout_summary="engagement window",
            )
        self._window_closed = True

    async def _finish(self) -> NotificationResult:
        if self._status in (NotificationStatus.CANCELLED, NotificationStatus.EXPIRED):
            status = DeliveryStatus(self._status.value)
            # Channels the plan recorded as sending are cancelled too, not left sending.
            self._channels = [
                ChannelResult(channel=c, status=status, reason=self._reason)
                for c in (self._req.request.channels or self._planned)
            ]
        if self._unrecorded:
            await self._record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    # --- helpers --------------------------------------------------------------------------------

    @property
    def _req(self) -> NotificationInput:
        return self._input

    def _require_waiting(self, action: str) -> None:
        if self._status is not NotificationStatus.SCHEDULED or self._cancel_reason is not None:
            raise ValueError(f"cannot {action}: the notification is already {self._status.value}")
        if self._planning:
            raise ValueError(f"cannot {action}: the notification is being sent")

    def _set_status(self, status: NotificationStatus, *, upsert: bool = True) -> None:
        self._status = status
        self._unrecorded = True
        if not upsert:
            return
        updates: list[SearchAttributeUpdate[Any]] = [sa.STATUS.value_set(status.value)]
        if self._channels:
            attempted = [
                c.channel.value for c in self._channels if c.status is not DeliveryStatus.SUPPRESSED
            ]
            updates.append(sa.CHANNELS.value_set(attempted))
        workflow.upsert_search_attributes(updates)

    async def _record(self) -> None:
        req = self._req
        self._unrecorded = False
        channels = self._channels
        if self._lean:
            # The plan and the deliveries wrote their channels as they went; a receipt's status
            # was written by the front door. Rewriting them would only race the receipts.
            channels = [c for c in self._channels if self._written.get(c.channel) != c]
            self._written.update((c.channel, c) for c in channels)
        await workflow.execute_local_activity_method(
            NotificationActivities.record_notification,
            RecordInput(
                notification_id=req.notification_id,
                user_id=req.request.user_id,
                template_id=req.request.template_id,
                template_version=req.template_version,
                priority=req.priority,
                status=self._status,
                send_at=self._send_at,
                reason=self._reason,
                channels=channels,
                experiment_id=req.experiment_id,
                variant=req.variant,
            ),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )

    def _result(self) -> NotificationResult:
        req = self._req
        return NotificationResult(
            notification_id=req.notification_id,
            user_id=req.request.user_id,
            template_id=req.request.template_id,
            template_version=req.template_version,
            priority=req.priority,
            status=self._status,
            send_at=self._send_at,
            channels=list(self._channels),
            engagement=list(self._engagement),
            engagement_dropped=self._engagement_dropped,
            reason=self._reason,
            send_time_reason=self._send_time_reason,
            channel_reason=self._channel_reason,
        )


def _settle(result: ChannelResult, receipt: DeliveryReceipt) -> ChannelResult:
    return result.model_copy(update={"status": receipt.status, "reason": receipt.reason})


def _reason(error: ActivityError) -> str:
    cause = error.cause
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
    if error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return f"gave up after the last retry: {message}"
    if error.retry_state is RetryState.TIMEOUT:
        return f"gave up at the delivery deadline: {message}"
    return message
