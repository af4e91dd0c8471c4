"""BroadcastWorkflow: one template to an audience, a page at a time (`broadcast/<id>`).

Per page: an activity reads the next keyset page of the audience and plans it in bulk
(preferences, quiet hours, frequency caps), recording who is suppressed and starting a
NotificationWorkflow for each recipient who must wait; then one batch activity per channel
delivers the page's sendable recipients on that channel's task queue, with a per-recipient
claim in the database so a retried batch re-sends nobody whose send was recorded. The run keeps
the cursor and counters only, records them after each page, and continues as new every
`pages_per_run` pages or when the server suggests it. Pause, resume and cancel are updates
that take effect between pages.

With an experiment, three phases come first: *testing* pages through the audience's ids and
enrols the users a hash puts in the test share in the broadcast's ExperimentWorkflow (which
assigns each a variant, sends it and counts engagement); *waiting* looks at the experiment's
recorded outcome every `check_every` (a timer and one activity a look, continuing as new like
the pages do) until it has ended; *rollout* is the ordinary page loop with the chosen variant's
template, data and channels, leaving out everyone the experiment enrolled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.broadcast import BroadcastActivities
    from activities.broadcast_io import (
        BroadcastSpec,
        DeliverBatchInput,
        DeliverBatchOutput,
        EnrolSampleInput,
        ExperimentOutcomeInput,
        PlanPageInput,
        PlanPageOutput,
        RecordBroadcastInput,
    )
    from activities.errors import NOT_FOUND, PERMANENT, TEMPLATE
    from tidings.broadcast_models import Audience, Phase, UserIdsAudience
    from tidings.models import Channel
    from workflows import search_attributes as sa
    from workflows.broadcast_io import (
        BroadcastInput,
        BroadcastProgress,
        BroadcastState,
        CancelBroadcastInput,
        PauseInput,
        ResumeInput,
        RolloutVariant,
        SampleState,
    )
    from workflows.policies import LOCAL_RETRY, LOCAL_TIMEOUT
    from workflows.queues import channel_queue

# Patches (see tests/replay): broadcast_v1 histories replay without them.
FAILED_STATUS_PATCH = "broadcast_failed_status"  # a failed run records status "failed"
STATUS_ATTRIBUTE_PATCH = "broadcast_status_attribute"  # pause/resume upsert TidingsStatus
FINISHED = "BroadcastFinished"  # pausing, resuming or cancelling a broadcast that has ended
PLAN_TIMEOUT = timedelta(minutes=5)  # a page of reads plus starting its deferred notifications
BATCH_TIMEOUT = timedelta(minutes=30)  # a page of sends at the provider's paced rate
BATCH_HEARTBEAT_TIMEOUT = timedelta(seconds=10)  # a dead worker's batch resumes this soon
ENROL_TIMEOUT = timedelta(minutes=30)  # a page's test share, one update each
ENROL_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
OUTCOME_TIMEOUT = timedelta(seconds=60)
# Past the experiment's maximum duration by this many looks, the broadcast stops waiting for an
# outcome the experiment should have recorded (it was terminated, say) and sends control.
WAIT_GRACE_LOOKS = 3
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[PERMANENT, NOT_FOUND, TEMPLATE],
)


@workflow.defn(name="BroadcastWorkflow")
class BroadcastWorkflow:
    @workflow.init
    def __init__(self, input: BroadcastInput) -> None:
        self._input = input
        self._state = input.state or BroadcastState(
            started_at=workflow.now(),
            test=SampleState() if input.experiment is not None else None,
        )
        self._cancel_reason: str | None = None
        self._status = "paused" if self._state.paused else "running"
        self._ahead: PlanPageOutput | None = None  # the next page, planned during this one
        self._stale = False  # a pause came while the next page was being planned
        # A list of ids is paged in the workflow, in id order, so each page's activity input
        # carries only that page's ids.
        audience = input.audience
        self._ids = (
            sorted(set(audience.user_ids)) if isinstance(audience, UserIdsAudience) else None
        )

    # --- handlers -------------------------------------------------------------------------------

    @workflow.query(name="progress")
    def progress(self) -> BroadcastProgress:
        state = self._state
        return BroadcastProgress(
            broadcast_id=self._input.broadcast_id,
            status=self._status,
            pages=state.pages,
            cursor=state.cursor,
            counters=state.counters,
            runs=state.runs,
            started_at=state.started_at,
            reason=self._cancel_reason,
            phase=state.test.phase if state.test else None,
            detail=self._detail(),
            experiment_id=self._input.experiment.experiment_id if self._input.experiment else None,
            variant=state.test.variant if state.test else None,
            enrolled=dict(state.test.enrolled) if state.test else {},
        )

    @workflow.update(name="pause")
    def pause(self, input: PauseInput) -> BroadcastProgress:
        self._state.paused = True
        self._stale, self._ahead = True, None  # judged again when resumed, at that time
        self._status = "paused"
        self._upsert_status()
        return self.progress()

    @pause.validator
    def _validate_pause(self, input: PauseInput) -> None:
        self._require_open("pause")

    @workflow.update(name="resume")
    def resume(self, input: ResumeInput) -> BroadcastProgress:
        self._state.paused = False
        self._status = "running"
        self._upsert_status()
        return self.progress()

    @resume.validator
    def _validate_resume(self, input: ResumeInput) -> None:
        self._require_open("resume")

    @workflow.update(name="cancel")
    def cancel(self, input: CancelBroadcastInput) -> BroadcastProgress:
        self._cancel_reason = input.reason
        self._status = "cancelling"
        return self.progress()

    @cancel.validator
    def _validate_cancel(self, input: CancelBroadcastInput) -> None:
        self._require_open("cancel")

    def _upsert_status(self) -> None:
        """The Web UI's TidingsStatus follows pause and resume. A new command, so only in runs
        that did not already pass this point without it."""
        if workflow.patched(STATUS_ATTRIBUTE_PATCH):
            workflow.upsert_search_attributes([sa.STATUS.value_set(self._status)])

    def _require_open(self, action: str) -> None:
        if self._status in ("completed", "cancelled", "cancelling", "failed"):
            raise ApplicationError(
                f"cannot {action}: broadcast {self._input.broadcast_id} is {self._status}",
                type=FINISHED,
            )

    # --- main -----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: BroadcastInput) -> BroadcastProgress:
        try:
            return await self._run()
        except (ActivityError, ApplicationError) as e:
            # A non-retryable failure (the template or segment gone, no provider for a
            # channel) fails the workflow: the broadcasts row must say so rather than stay
            # "running" forever. Continue-as-new and cancellation are not these errors.
            if workflow.patched(FAILED_STATUS_PATCH):
                self._status = "failed"
                self._cancel_reason = _reason(e)
                await self._record("failed")
                workflow.upsert_search_attributes([sa.STATUS.value_set("failed")])
            raise

    async def _run(self) -> BroadcastProgress:
        state = self._state
        pages_this_run = 0
        while True:
            await workflow.wait_condition(
                lambda: not state.paused or self._cancel_reason is not None
            )
            if self._cancel_reason is not None:
                self._status = "cancelled"
                break
            if self._ahead is None and self._time_to_continue(pages_this_run):
                await self._continue_as_new()
            test = state.test
            if test is not None and test.phase is not Phase.ROLLOUT:
                # One step of the experiment: a page of the sample enrolled, or one look.
                if test.phase is Phase.TESTING:
                    await self._enrol_page(test)
                else:
                    await self._look(test)
                pages_this_run += 1
                await self._record("paused" if state.paused else "running")
                continue
            more = await self._page(prefetch=not self._time_to_continue(pages_this_run + 1))
            pages_this_run += 1
            if not more:
                self._status = "completed"
                break
            await self._record("paused" if state.paused else "running")
        await self._record(self._status)
        workflow.upsert_search_attributes([sa.STATUS.value_set(self._status)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    def _time_to_continue(self, pages_this_run: int) -> bool:
        return pages_this_run >= self._input.pages_per_run or (
            pages_this_run > 0 and workflow.info().is_continue_as_new_suggested()
        )

    def _page_audience(self, cursor: str) -> tuple[Audience, bool]:
        """The audience of the page after `cursor`, and whether it is the last page of a list
        of ids."""
        input = self._input
        if self._ids is None:
            return input.audience, False
        start = bisect.bisect_right(self._ids, cursor)
        chunk = self._ids[start : start + input.page_size]
        return UserIdsAudience(user_ids=chunk), start + input.page_size >= len(self._ids)

    async def _plan(self, audience: Audience, cursor: str, batch: int) -> PlanPageOutput:
        return await workflow.execute_activity_method(
            BroadcastActivities.plan_page,
            PlanPageInput(
                spec=self._spec(),
                audience=audience,
                after=cursor,
                limit=self._input.page_size,
                batch=batch,
                now=workflow.now(),
                exclude_enrolled_in=(
                    self._input.experiment.experiment_id if self._input.experiment else None
                ),
            ),
            start_to_close_timeout=PLAN_TIMEOUT,
            retry_policy=BATCH_RETRY,
            summary=f"plan page {batch}",
        )

    async def _page(self, *, prefetch: bool) -> bool:
        """Deliver the next page (planned ahead during the previous page's delivery, or now),
        planning the page after it meanwhile when `prefetch`; False when the audience is
        exhausted. A page planned ahead is used only if nothing (a pause, a cancel, the end of
        the run) came between: otherwise it is planned again, which is safe because planning
        is idempotent and a batch never sends to a recipient recorded as deferred or
        suppressed."""
        input, state = self._input, self._state
        audience, last = self._page_audience(state.cursor)
        if isinstance(audience, UserIdsAudience) and not audience.user_ids:
            return False
        batch = state.pages + 1
        plan = self._ahead or await self._plan(audience, state.cursor, batch)
        self._ahead = None
        state.counters.recipients += plan.counters.recipients
        for channel, counters in plan.counters.channels.items():
            # Targeted, suppressed and deferred come from planning; sent and failed from the
            # batches below.
            state.counters.channel(channel).add(counters)
        if isinstance(audience, UserIdsAudience):
            cursor, more = audience.user_ids[-1], not last
        elif plan.last_user_id is None:
            cursor, more = state.cursor, False
        else:
            cursor, more = plan.last_user_id, plan.recipients >= input.page_size
        deliveries = [self._deliver(channel, batch, ids) for channel, ids in plan.sendable.items()]
        ahead = None
        if more and prefetch and not state.paused and self._cancel_reason is None:
            self._stale = False
            ahead = self._plan(self._page_audience(cursor)[0], cursor, batch + 1)
        results = await asyncio.gather(*deliveries, *([ahead] if ahead is not None else []))
        for channel, output in zip(plan.sendable, results, strict=False):
            assert isinstance(output, DeliverBatchOutput)
            state.counters.channel(channel).sent += output.sent
            state.counters.channel(channel).failed += output.failed
        if ahead is not None and not self._stale:
            next_plan = results[-1]
            assert isinstance(next_plan, PlanPageOutput)
            self._ahead = next_plan
        state.pages, state.cursor = batch, cursor
        return more

    async def _deliver(
        self, channel: Channel, batch: int, user_ids: list[str]
    ) -> DeliverBatchOutput:
        input = self._input
        return await workflow.execute_activity_method(
            BroadcastActivities.deliver_batch,
            DeliverBatchInput(
                spec=self._spec(),
                channel=channel,
                batch=batch,
                user_ids=user_ids,
                concurrency=input.concurrency,
            ),
            task_queue=channel_queue(input.task_queue_base, channel, input.priority),
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=BATCH_HEARTBEAT_TIMEOUT,
            retry_policy=BATCH_RETRY,
            summary=f"page {batch} {channel.value}: {len(user_ids)} recipients",
        )

    async def _record(self, status: str) -> None:
        state = self._state
        await workflow.execute_local_activity_method(
            BroadcastActivities.record_broadcast,
            RecordBroadcastInput(
                broadcast_id=self._input.broadcast_id,
                status=status,
                counters=state.counters,
                pages=state.pages,
                phase=self._detail(),
                experiment_id=self._input.experiment.experiment_id
                if self._input.experiment
                else None,
            ),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.runs += 1
        workflow.continue_as_new(self._input.model_copy(update={"state": self._state}))

    def _spec(self) -> BroadcastSpec:
        input = self._input
        chosen = self._chosen()
        if chosen is not None:
            return BroadcastSpec(
                broadcast_id=input.broadcast_id,
                template_id=chosen.template_id,
                template_version=chosen.template_version,
                data=chosen.data,
                channels=chosen.channels,
                priority=input.priority,
            )
        return BroadcastSpec(
            broadcast_id=input.broadcast_id,
            template_id=input.template_id,
            template_version=input.template_version,
            data=input.data,
            channels=input.channels,
            priority=input.priority,
        )

    # --- the experiment on a share of the audience ----------------------------------------------

    def _chosen(self) -> RolloutVariant | None:
        test, experiment = self._state.test, self._input.experiment
        if test is None or experiment is None or test.phase is not Phase.ROLLOUT:
            return None
        return experiment.variant(test.variant)

    def _detail(self) -> str | None:
        """The phase in words: the `progress` query, the broadcasts row and the Web UI."""
        test, experiment = self._state.test, self._input.experiment
        if test is None or experiment is None:
            return None
        eid = experiment.experiment_id
        if test.phase is Phase.TESTING:
            return f"testing: enrolling {experiment.share:.0%} of the audience in experiment {eid}"
        if test.phase is Phase.WAITING:
            return f"waiting for experiment {eid}"
        why = "winner" if test.ending == "winner" else f"{test.ending}, control"
        return f"sending {test.variant} ({why}) to the rest"

    def _show_phase(self) -> None:
        workflow.set_current_details(self._detail() or "")

    async def _enrol_page(self, test: SampleState) -> None:
        """Enrol the test share of the next page of ids; after the last page, wait."""
        experiment = self._input.experiment
        assert experiment is not None
        self._show_phase()
        audience, last = self._page_audience(test.cursor)
        if isinstance(audience, UserIdsAudience) and not audience.user_ids:
            self._to_waiting(test)
            return
        output = await workflow.execute_activity_method(
            BroadcastActivities.enrol_sample,
            EnrolSampleInput(
                broadcast_id=self._input.broadcast_id,
                experiment_id=experiment.experiment_id,
                share=experiment.share,
                audience=audience,
                after=test.cursor,
                limit=self._input.page_size,
            ),
            start_to_close_timeout=ENROL_TIMEOUT,
            heartbeat_timeout=ENROL_HEARTBEAT_TIMEOUT,
            retry_policy=BATCH_RETRY,
            summary=f"test share of page {test.pages + 1}",
        )
        test.pages += 1
        test.sampled += output.sampled
        for variant, n in output.enrolled.items():
            test.enrolled[variant] = test.enrolled.get(variant, 0) + n
            self._state.counters.recipients += n
        if isinstance(audience, UserIdsAudience):
            test.cursor, more = audience.user_ids[-1], not last
        else:
            more = output.last_user_id is not None and output.read >= self._input.page_size
            test.cursor = output.last_user_id or test.cursor
        if output.closed:
            # The experiment ended early (stopped, or decided already): the rest of the sample
            # is not enrolled, so it gets the rollout like everyone else.
            test.closed = True
        if output.closed or not more:
            self._to_waiting(test)

    def _to_waiting(self, test: SampleState) -> None:
        test.phase, test.waiting_since = Phase.WAITING, workflow.now()
        self._show_phase()

    async def _look(self, test: SampleState) -> None:
        """Wait one `check_every` (or less, if the experiment had ended already) and read the
        experiment's outcome; decide the rollout's variant when it has one."""
        experiment = self._input.experiment
        assert experiment is not None and test.waiting_since is not None
        self._show_phase()
        every = timedelta(seconds=experiment.check_every_seconds)
        if not test.closed or test.polls > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._cancel_reason is not None or self._state.paused,
                    timeout=every,
                    timeout_summary=f"waiting for experiment {experiment.experiment_id}",
                )
            if self._cancel_reason is not None or self._state.paused:
                return  # the loop takes it from here; the look is made after a resume
        test.polls += 1
        outcome = await workflow.execute_activity_method(
            BroadcastActivities.experiment_outcome,
            ExperimentOutcomeInput(experiment_id=experiment.experiment_id),
            start_to_close_timeout=OUTCOME_TIMEOUT,
            retry_policy=BATCH_RETRY,
            summary=f"has experiment {experiment.experiment_id} decided?",
        )
        started = self._state.started_at or test.waiting_since
        limit = timedelta(seconds=experiment.max_duration_seconds) + every * WAIT_GRACE_LOOKS
        if outcome.finished:
            winner = outcome.winner if outcome.ending == "winner" else None
            self._decide(test, outcome.ending or "stopped", winner, outcome.reason)
        elif workflow.now() - started >= limit:
            self._decide(test, "timeout", None, "the experiment recorded no outcome in time")

    def _decide(
        self, test: SampleState, ending: str, winner: str | None, reason: str | None
    ) -> None:
        experiment = self._input.experiment
        assert experiment is not None
        chosen = experiment.variant(winner)  # control unless a known variant won
        test.ending, test.variant, test.reason = ending, chosen.name, reason
        test.phase = Phase.ROLLOUT
        workflow.upsert_search_attributes([sa.VARIANT.value_set(chosen.name)])
        self._show_phase()


def _reason(error: Exception) -> str:
    """The root cause's message: an ActivityError only says which activity failed."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause)[:500]
