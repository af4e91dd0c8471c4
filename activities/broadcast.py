"""Activities of BroadcastWorkflow: thin adapters over `tidings.broadcasts`.

`plan_broadcast_page` reads a page of the audience and plans it in bulk, records who is
suppressed, and starts a NotificationWorkflow for each recipient who must wait (through the
injected `start_deferred`, built by the worker). `deliver_broadcast_batch` sends one page on
one channel, heartbeating the index below which every recipient is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.broadcast_enroll import Enrol, EnrolResult
from activities.broadcast_io import (
    CreateBroadcastInput,
    DeliverBatchInput,
    DeliverBatchOutput,
    EnrolSampleInput,
    EnrolSampleOutput,
    ExperimentOutcome,
    ExperimentOutcomeInput,
    PlanPageInput,
    PlanPageOutput,
    RecordBroadcastInput,
)
from activities.errors import NOT_FOUND, PERMANENT, classified
from activities.heartbeat import DEFAULT_EVERY
from tidings import broadcasts, planning
from tidings.broadcast_models import (
    Outcome,
    RecipientStatus,
    UnknownSegment,
    in_sample,
    notification_id,
)
from tidings.channels.base import ChannelSender
from tidings.frequency import FrequencyCaps
from tidings.models import Channel
from tidings.store import Store

StartDeferred = Callable[[Sequence[broadcasts.DeferredRecipient]], Awaitable[None]]


async def _no_deferred(recipients: Sequence[broadcasts.DeferredRecipient]) -> None:
    if recipients:
        raise ApplicationError("this worker cannot start deferred notifications", type=PERMANENT)


async def _no_enrol(
    experiment_id: str, user_ids: Sequence[str], progress: Callable[[], None]
) -> EnrolResult:
    if user_ids:
        raise ApplicationError("this worker cannot enrol in experiments", type=PERMANENT)
    return EnrolResult()


class BroadcastActivities:
    def __init__(
        self,
        store: Store,
        senders: Mapping[Channel, ChannelSender],
        *,
        caps: FrequencyCaps | None = None,
        rate_limits: Mapping[Channel, float] | None = None,
        start_deferred: StartDeferred = _no_deferred,
        enrol: Enrol = _no_enrol,
        flush_every: int = 100,
        heartbeat_every: float = DEFAULT_EVERY,
    ) -> None:
        self._store = store
        self._senders = dict(senders)
        self._caps = caps or FrequencyCaps()
        # One limiter per channel for the whole worker: concurrent batches share the pace.
        self._limiters = {
            c: broadcasts.RateLimiter((rate_limits or {}).get(c)) for c in self._senders
        }
        self._start_deferred = start_deferred
        self._enrol = enrol
        self._flush_every = flush_every
        self._heartbeat_every = heartbeat_every

    @activity.defn(name="plan_broadcast_page")
    async def plan_page(self, input: PlanPageInput) -> PlanPageOutput:
        spec = input.spec
        try:
            ids = await self._store.audience_page(input.audience, input.after, input.limit)
        except UnknownSegment as e:
            raise ApplicationError(str(e), type=NOT_FOUND, non_retryable=True) from e
        if not ids:
            return PlanPageOutput()
        read, last, excluded = len(ids), ids[-1], 0
        if input.exclude_enrolled_in is not None:
            # The test share had the experiment's message: never the rollout's too.
            enrolled = await self._store.enrolled_among(input.exclude_enrolled_in, ids)
            ids = [i for i in ids if i not in enrolled]
            excluded = read - len(ids)
            if not ids:
                return PlanPageOutput(recipients=read, last_user_id=last, excluded=excluded)
        template = await self._store.get_template(spec.template_id, spec.template_version)
        if template is None:
            raise ApplicationError(
                f"template {spec.template_id} version {spec.template_version} not found",
                type=NOT_FOUND,
                non_retryable=True,
            )
        caps_apply = planning.counts_against_cap(self._caps, spec.priority, template.category)
        reads = await self._store.page_reads(
            ids,
            category=template.category if caps_apply else None,
            since=broadcasts.cap_window_start(input.now),
            broadcast_id=spec.broadcast_id,  # its own sends (a page planned twice) never cap it
        )
        plan = broadcasts.plan_page(
            broadcast_id=spec.broadcast_id,
            recipients=broadcasts.recipients_from(reads, caps_apply=caps_apply),
            template=template,
            channels=spec.channels,
            priority=spec.priority,
            now=input.now,
            configured=self._senders.keys(),
            caps=self._caps,
        )
        await self._start_deferred(
            [
                broadcasts.DeferredRecipient(
                    notification_id=notification_id(spec.broadcast_id, user_id),
                    user_id=user_id,
                    template_id=spec.template_id,
                    template_version=spec.template_version,
                    data=spec.data,
                    channels=spec.channels,
                    priority=spec.priority,
                    broadcast_id=spec.broadcast_id,
                )
                for user_id, _, _, _ in plan.deferred
            ]
        )
        rows: dict[Channel, list[Outcome]] = {}
        for user_id, channel, reason in plan.suppressed:
            rows.setdefault(channel, []).append(
                Outcome(user_id, RecipientStatus.SUPPRESSED, error=reason)
            )
        for user_id, channels, until, reason in plan.deferred:
            for channel in channels:
                rows.setdefault(channel, []).append(
                    Outcome(
                        user_id,
                        RecipientStatus.DEFERRED,
                        error=f"{reason} (until {until.isoformat()})",
                    )
                )
        for channel, outcomes in rows.items():
            await self._store.record_recipients(spec.broadcast_id, channel, input.batch, outcomes)
        return PlanPageOutput(
            recipients=read,
            last_user_id=last,
            counters=plan.counters,
            sendable=plan.sendable,
            excluded=excluded,
        )

    @activity.defn(name="enrol_broadcast_sample")
    async def enrol_sample(self, input: EnrolSampleInput) -> EnrolSampleOutput:
        """Read the next page of ids and enrol those in the test share. Safe to retry: the
        experiment keeps each user's first enrolment and returns it on a repeat."""
        try:
            ids = await self._store.audience_page(input.audience, input.after, input.limit)
        except UnknownSegment as e:
            raise ApplicationError(str(e), type=NOT_FOUND, non_retryable=True) from e
        if not ids:
            return EnrolSampleOutput()
        sample = [u for u in ids if in_sample(input.broadcast_id, u, input.share)]
        done = 0

        def progress() -> None:
            nonlocal done
            done += 1
            activity.heartbeat(done)

        result = await self._enrol(input.experiment_id, sample, progress)
        return EnrolSampleOutput(
            read=len(ids),
            last_user_id=ids[-1],
            sampled=len(sample),
            enrolled=result.enrolled,
            closed=result.closed,
        )

    @activity.defn(name="broadcast_experiment_outcome")
    async def experiment_outcome(self, input: ExperimentOutcomeInput) -> ExperimentOutcome:
        """What the experiment recorded when it ended (its row outlives the workflow)."""
        record = await self._store.get_experiment(input.experiment_id)
        if record is None or record.status != "finished":
            return ExperimentOutcome()
        return ExperimentOutcome(
            finished=True, ending=record.ending, winner=record.winner, reason=record.reason
        )

    @activity.defn(name="deliver_broadcast_batch")
    async def deliver_batch(self, input: DeliverBatchInput) -> DeliverBatchOutput:
        spec = input.spec
        details = activity.info().heartbeat_details
        resumed_at = int(details[0]) if details else 0
        sender = self._senders.get(input.channel)
        if sender is None:
            raise ApplicationError(
                f"no {input.channel.value} provider is configured",
                type=PERMANENT,
                non_retryable=True,
            )
        reached = resumed_at

        async def on_progress(index: int) -> None:
            nonlocal reached
            reached = max(reached, index)
            activity.heartbeat(reached)
            await self._after_flush(reached)

        async def beat() -> None:
            # Between flushes too (a slow provider), always carrying the index: a heartbeat
            # without details would erase the last one.
            while True:
                activity.heartbeat(reached)
                await asyncio.sleep(self._heartbeat_every)

        beating = asyncio.create_task(beat())
        try:
            with classified(f"broadcast {spec.broadcast_id} batch {input.batch} {input.channel}"):
                result = await broadcasts.deliver_batch(
                    self._store,
                    sender,
                    broadcasts.BatchRequest(
                        broadcast_id=spec.broadcast_id,
                        channel=input.channel,
                        batch=input.batch,
                        user_ids=input.user_ids,
                        template_id=spec.template_id,
                        template_version=spec.template_version,
                        data=spec.data,
                        priority=spec.priority,
                        concurrency=input.concurrency,
                    ),
                    limiter=self._limiters[input.channel],
                    on_progress=on_progress,
                    flush_every=self._flush_every,
                )
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        return DeliverBatchOutput(
            sent=result.sent,
            failed=result.failed,
            resumed_at=resumed_at,
            already_done=result.already_done,
        )

    async def _after_flush(self, index: int) -> None:
        """Called after each write of outcomes; tests override it to crash an attempt midway."""

    @activity.defn(name="create_broadcast_record")
    async def create_broadcast_record(self, input: CreateBroadcastInput) -> bool:
        """The row a scheduled broadcast starts from; False when a repeated firing finds it."""
        return await self._store.create_broadcast(
            broadcast_id=input.broadcast_id,
            template_id=input.template_id,
            template_version=input.template_version,
            audience=input.audience,
            channels=input.channels,
            priority=input.priority,
        )

    @activity.defn(name="record_broadcast")
    async def record_broadcast(self, input: RecordBroadcastInput) -> None:
        await self._store.record_broadcast_progress(
            input.broadcast_id,
            status=input.status,
            counters=input.counters,
            pages=input.pages,
            phase=input.phase,
            experiment_id=input.experiment_id,
        )
