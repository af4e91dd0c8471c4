"""ExperimentWorkflow: one A/B test, open for the test's life (`experiment/<id>`).

Enrolment is an update: the user's arm comes from a stable hash (or the bandit's current
weights), the database keeps the first enrolment of each user (so a repeat returns it and sends
nothing), and the user's notification is a child NotificationWorkflow with parent close policy
ABANDON, so it outlives continue-as-new and the end of the test. Outcomes are not signalled here:
on a timer the parent reads per-arm counts from the database in an activity and applies the
decision rule from `tidings.experiments`. It keeps counters, never per-user state, and continues
as new at a fixed event budget or when the server suggests it.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.experiment import ExperimentActivities
    from activities.io import ClaimInput, CountsInput, FinishInput
    from tidings.experiments import (
        HOLDOUT,
        ArmCounts,
        Decision,
        Ending,
        ExperimentConfig,
        OnWinner,
        Rule,
        Variant,
        assign,
        decide_bandit,
        decide_sequential,
    )
    from tidings.models import NotificationRequest, NotificationStatus, Priority
    from workflows import search_attributes as sa
    from workflows.io import (
        EnrollInput,
        Enrollment,
        ExperimentInput,
        ExperimentResults,
        ExperimentState,
        NotificationInput,
        StopInput,
    )
    from workflows.notification import NotificationWorkflow
    from workflows.policies import LOCAL_RETRY, LOCAL_TIMEOUT
    from workflows.queues import experiment_notification_id, workflow_id, workflow_queue

FINISHED = "ExperimentFinished"  # enrolling into (or stopping) a test that has ended
BUSY = "ExperimentBusy"  # continuing as new: retry in a moment, the next run takes it
COUNTS_TIMEOUT = timedelta(seconds=60)
COUNTS_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn(name="ExperimentWorkflow")
class ExperimentWorkflow:
    @workflow.init
    def __init__(self, input: ExperimentInput) -> None:
        self._input = input
        self._config: ExperimentConfig = input.config
        self._state = input.state or ExperimentState(started_at=workflow.now())
        self._stop_reason: str | None = None
        self._draining = False  # waiting for handlers before continue-as-new
        self._closed = False  # the run has recorded its ending and is returning

    # --- handlers -------------------------------------------------------------------------------

    @workflow.query(name="results")
    def results(self) -> ExperimentResults:
        return self._results()

    @workflow.update(name="enroll")
    async def enroll(self, input: EnrollInput) -> Enrollment:
        config = self._config
        variant = self._arm(input.user_id)
        notification_id = (
            None if variant == HOLDOUT else experiment_notification_id(config.id, input.user_id)
        )
        info = workflow.current_update_info()
        update_id = info.id if info else workflow.uuid4().hex
        claim = await workflow.execute_local_activity_method(
            ExperimentActivities.claim_enrolment,
            ClaimInput(
                experiment_id=config.id,
                user_id=input.user_id,
                variant=variant,
                notification_id=notification_id,
                claim_id=f"{update_id}@{workflow.info().run_id}",
            ),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        # The same update again is still this enrolment: when a workflow task that ran the
        # claim is not committed (the run continued as new first), the server re-delivers the
        # update to the next run, where the claim is found under an earlier run's id.
        mine = claim.first or (claim.claim_id or "").split("@")[0] == update_id
        if not mine:
            self._state.duplicates += 1
            return Enrollment(
                experiment_id=config.id,
                user_id=input.user_id,
                variant=claim.variant,
                notification_id=claim.notification_id,
                duplicate=True,
            )
        variant, notification_id = claim.variant, claim.notification_id
        if notification_id is None:
            if claim.first:
                self._count(variant)
        elif await self._start_notification(config.variant(variant), notification_id, input):
            # Counted with the child's start, in the same workflow task: a child that exists
            # was counted by the run that started it.
            self._count(variant)
        return Enrollment(
            experiment_id=config.id,
            user_id=input.user_id,
            variant=variant,
            notification_id=notification_id,
        )

    def _count(self, variant: str) -> None:
        self._state.enrolled[variant] = self._state.enrolled.get(variant, 0) + 1

    @enroll.validator
    def _validate_enroll(self, input: EnrollInput) -> None:
        self._require_open("enrol")
        if self._draining:
            raise ApplicationError("the test is continuing as new; retry", type=BUSY)
        try:
            self._request(self._config.control, input)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ApplicationError(f"{field}: {first['msg']}", type="InvalidRequest") from e

    @workflow.update(name="stop")
    async def stop(self, input: StopInput) -> ExperimentResults:
        self._stop_reason = input.reason
        await workflow.wait_condition(lambda: self._closed)
        return self._results()

    @stop.validator
    def _validate_stop(self, input: StopInput) -> None:
        self._require_open("stop")

    # --- main -----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ExperimentInput) -> ExperimentResults:
        config = self._config
        state = self._state
        deadline = state.started_at + config.max_duration
        while True:
            if state.ending is not None and not self._promoting:
                break  # decided, nothing to promote: the test is over
            now = workflow.now()
            if now >= deadline:
                if state.ending is None:
                    await self._read_counts()
                    self._end(Ending.MAX_DURATION, None, "no winner within the maximum duration")
                break
            due = (state.last_check_at or state.started_at) + config.check_every
            wake = min(due, deadline) if state.ending is None else deadline
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._stop_reason is not None or self._over_budget(),
                    timeout=max(wake - now, timedelta(seconds=1)),
                    timeout_summary="next check" if state.ending is None else "promoting",
                )
            if self._stop_reason is not None:
                if state.ending is None:
                    await self._read_counts()
                    self._end(Ending.STOPPED, None, self._stop_reason)
                break
            if self._over_budget():
                await self._continue_as_new()
            if state.ending is None and workflow.now() >= due:
                await self._check()
        return await self._finish()

    @property
    def _promoting(self) -> bool:
        return (
            self._state.ending is Ending.WINNER
            and self._config.on_winner is OnWinner.PROMOTE
            and self._stop_reason is None
        )

    def _over_budget(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.event_budget
        )

    async def _continue_as_new(self) -> None:
        # Updates arriving now are refused with BUSY (the client retries them against the next
        # run); those already accepted finish here first.
        self._draining = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.runs += 1
        workflow.continue_as_new(self._input.model_copy(update={"state": self._state}))

    async def _read_counts(self) -> dict[str, ArmCounts]:
        config = self._config
        output = await workflow.execute_activity_method(
            ExperimentActivities.experiment_counts,
            CountsInput(
                experiment_id=config.id,
                engagement_types=list(config.metric.engagement_types),
                window_seconds=config.attribution_window.total_seconds(),
            ),
            start_to_close_timeout=COUNTS_TIMEOUT,
            retry_policy=COUNTS_RETRY,
            summary="read per-variant counts",
        )
        self._state.counts = output.counts
        self._state.last_check_at = workflow.now()
        return output.counts

    async def _check(self) -> None:
        counts = await self._read_counts()
        state, config = self._state, self._config
        state.checks += 1
        decision: Decision
        if config.rule is Rule.BANDIT:
            decision, state.weights = decide_bandit(config, counts, workflow.random())
        else:
            decision = decide_sequential(config, counts)
        state.decision = decision
        if decision.ending is not None:
            self._end(decision.ending, decision.winner, decision.reason)
            await self._record_ending()

    def _end(self, ending: Ending, winner: str | None, reason: str) -> None:
        state = self._state
        state.ending, state.winner, state.reason = ending, winner, reason
        state.decided_at = workflow.now()

    async def _record_ending(self) -> None:
        state = self._state
        assert state.ending is not None and state.reason is not None
        await workflow.execute_activity_method(
            ExperimentActivities.finish_experiment,
            FinishInput(
                experiment_id=self._config.id,
                ending=state.ending.value,
                winner=state.winner,
                reason=state.reason,
                outcome=self._results(status="finished").model_dump(mode="json"),
            ),
            start_to_close_timeout=COUNTS_TIMEOUT,
            retry_policy=COUNTS_RETRY,
            summary=f"record ending: {state.ending.value}",
        )
        state.recorded = True

    async def _finish(self) -> ExperimentResults:
        state = self._state
        if (
            state.ending is not None
            and state.decided_at == workflow.now()
            and not (state.decision is not None and state.decision.ending is state.ending)
        ):
            await self._record_ending()  # stopped or out of time: not recorded yet
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._results()

    # --- helpers --------------------------------------------------------------------------------

    def _require_open(self, action: str) -> None:
        state = self._state
        if (
            self._closed
            or self._stop_reason is not None
            or (state.ending is not None and not self._promoting)
        ):
            ending = state.ending.value if state.ending else "stopping"
            raise ApplicationError(
                f"cannot {action}: experiment {self._config.id} has finished ({ending}):"
                f" {state.reason or self._stop_reason}",
                type=FINISHED,
            )

    def _arm(self, user_id: str) -> str:
        state, config = self._state, self._config
        if state.ending is Ending.WINNER and state.winner is not None:
            return state.winner  # promoting: later enrolments get the winner
        return assign(config, user_id, state.weights)

    def _request(self, variant: Variant, input: EnrollInput) -> NotificationRequest:
        config = self._config
        return NotificationRequest(
            user_id=input.user_id,
            template_id=variant.template_id or config.template_id or "",
            data={**config.data, **(variant.data or {}), **input.data},
            channels=variant.channels,
            priority=variant.priority,
        )

    async def _start_notification(
        self, variant: Variant, notification_id: str, input: EnrollInput
    ) -> bool:
        """Start the user's notification; False when it had been started already."""
        config = self._config
        request = self._request(variant, input)
        priority = variant.priority or Priority.MEDIUM
        version = variant.template_version or 1
        try:
            await workflow.start_child_workflow(
                NotificationWorkflow.run,
                NotificationInput(
                    notification_id=notification_id,
                    request=request,
                    template_version=version,
                    priority=priority,
                    engagement_window_hours=self._input.engagement_window_hours,
                    task_queue_base=self._input.task_queue_base,
                    fallback=variant.fallback or [],
                    experiment_id=config.id,
                    variant=variant.name,
                ),
                id=workflow_id(notification_id),
                task_queue=workflow_queue(self._input.task_queue_base, priority),
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.USER, request.user_id),
                        SearchAttributePair(sa.TEMPLATE, request.template_id),
                        SearchAttributePair(sa.PRIORITY, priority.value),
                        SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
                        SearchAttributePair(sa.CHANNELS, [c.value for c in request.channels or []]),
                        SearchAttributePair(sa.EXPERIMENT, config.id),
                        SearchAttributePair(sa.VARIANT, variant.name),
                    ]
                ),
                static_summary=(
                    f"{request.template_id} v{version} to {request.user_id}"
                    f" ({priority.value}), experiment {config.id} / {variant.name}"
                ),
            )
        except WorkflowAlreadyStartedError:
            return False  # by an earlier attempt of this same enrolment
        return True

    def _results(self, status: str | None = None) -> ExperimentResults:
        state, config = self._state, self._config
        decision = state.decision or Decision()
        if status is None:
            status = "running"
            if self._closed:
                status = "finished"
            elif state.ending is not None:
                status = "decided"
        names = [v.name for v in config.variants]
        return ExperimentResults(
            experiment_id=config.id,
            status=status,
            rule=config.rule,
            metric=config.metric,
            alpha=config.alpha,
            started_at=state.started_at,
            ending=state.ending,
            winner=state.winner,
            reason=state.reason,
            decided_at=state.decided_at,
            enrolled=dict(state.enrolled),
            duplicates=state.duplicates,
            counts=dict(state.counts),
            comparisons=list(decision.comparisons),
            probability_best=dict(decision.probability_best),
            weights=dict(zip(names, state.weights or config.shares, strict=True)),
            checks=state.checks,
            runs=state.runs,
            last_check_at=state.last_check_at,
        )
