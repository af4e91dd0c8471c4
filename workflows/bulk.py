"""BulkStartWorkflow (`bulk/<id>`): starts the NotificationWorkflows of a bulk accepted durably.

The recipients, their runs' inputs and their notification rows were written by the client in
one transaction before this run started; the run only walks them a page at a time with an
activity that starts each recipient's run (idempotent: deterministic workflow ids with
USE_EXISTING) and heartbeats the position reached. It keeps the position only, and continues as
new every `pages_per_run` pages or when the server suggests it, so its history stays bounded
whatever the bulk's size.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities
    from tidings.bulks import BulkPageInput, BulkPageOutput, BulkStartInput

PAGE_TIMEOUT = timedelta(minutes=10)  # a page of starts against a slow server
# A dead worker's page resumes this soon from its last heartbeat.
PAGE_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# No attempt limit: the rows are committed, and every recipient accepted must get its run; a
# server that is down delays the fan-out, it does not drop it.
PAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name="BulkStartWorkflow")
class BulkStartWorkflow:
    @workflow.init
    def __init__(self, input: BulkStartInput) -> None:
        self._input = input
        self._position = input.next_position
        self._started = 0

    @workflow.query(name="position")
    def position(self) -> int:
        return self._position

    @workflow.run
    async def run(self, input: BulkStartInput) -> BulkPageOutput:
        pages = 0
        while True:
            if pages >= input.pages_per_run or (
                pages > 0 and workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    input.model_copy(
                        update={"next_position": self._position, "runs": input.runs + 1}
                    )
                )
            page = await workflow.execute_activity_method(
                BulkActivities.start_page,
                BulkPageInput(
                    bulk_id=input.bulk_id,
                    from_position=self._position,
                    limit=input.page_size,
                    concurrency=input.concurrency,
                ),
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=PAGE_HEARTBEAT_TIMEOUT,
                retry_policy=PAGE_RETRY,
                summary=f"recipients from {self._position}",
            )
            pages += 1
            self._position = page.next_position
            self._started += page.started
            if page.done:
                return BulkPageOutput(
                    next_position=self._position, started=self._started, done=True
                )
