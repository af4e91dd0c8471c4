"""Heartbeat while a send is in progress, so Temporal notices a dead worker within the heartbeat
timeout instead of the attempt timeout (issue 7, defect 9: after `kill -9`, in-flight sends waited
for the 30 s attempt timeout before anyone retried them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

# Well inside any heartbeat timeout we set (workflows/policies.py HEARTBEAT_TIMEOUT): the SDK
# batches heartbeats and sends at most one per 80% of the timeout, so beating often costs nothing.
DEFAULT_EVERY = 1.0


@contextlib.asynccontextmanager
async def heartbeating(every: float = DEFAULT_EVERY) -> AsyncIterator[None]:
    """Heartbeat every `every` seconds until the block ends. A background task rather than calls
    inside the send, because the send is one await on a provider that may be slow to answer."""

    async def beat() -> None:
        # The first beat after `every`, not at once: the SDK sends a first heartbeat to the
        # server straight away (a write of the activity's state there), and most sends are over
        # within a second. The heartbeat timeout runs from the attempt's start either way.
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
