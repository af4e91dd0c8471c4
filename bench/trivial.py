"""The ceiling's workload: a workflow that runs one local activity and returns.

It does the least a Temporal workflow can do while still doing something, so no notification
(which runs several local activities and two regular ones) can complete faster on the same server.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TRIVIAL_WORKFLOW = "BenchTrivialWorkflow"


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n


@workflow.defn(name=TRIVIAL_WORKFLOW)
class TrivialWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_local_activity(
            noop, n, start_to_close_timeout=timedelta(seconds=30)
        )
