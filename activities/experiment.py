"""Activities of ExperimentWorkflow: thin adapters over the experiments store."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import NOT_FOUND
from activities.io import ClaimInput, CountsInput, CountsOutput, FinishInput
from tidings.experiments import Claim
from tidings.store import Store


class ExperimentActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="claim_enrolment")
    async def claim_enrolment(self, input: ClaimInput) -> Claim:
        try:
            return await self._store.claim_enrolment(
                experiment_id=input.experiment_id,
                user_id=input.user_id,
                variant=input.variant,
                notification_id=input.notification_id,
                claim_id=input.claim_id,
            )
        except LookupError as e:
            raise ApplicationError(str(e), type=NOT_FOUND, non_retryable=True) from e

    @activity.defn(name="experiment_counts")
    async def experiment_counts(self, input: CountsInput) -> CountsOutput:
        counts = await self._store.experiment_counts(
            input.experiment_id,
            engagement_types=tuple(input.engagement_types),
            window=timedelta(seconds=input.window_seconds),
        )
        return CountsOutput(counts=counts)

    @activity.defn(name="finish_experiment")
    async def finish_experiment(self, input: FinishInput) -> None:
        await self._store.finish_experiment(
            input.experiment_id,
            ending=input.ending,
            winner=input.winner,
            reason=input.reason,
            outcome=input.outcome,
        )
