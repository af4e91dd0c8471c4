"""Clears the inbox event log (what streams replay on `Last-Event-ID`) of rows older than
`EVENT_RETENTION_DAYS`, in every API process.

Writing an inbox event already drops that user's old rows, so only users who went quiet keep
stale ones; a sweep an hour is plenty. It runs in the API process's lifespan (the process that
serves the streams), first PRUNE_FIRST_AFTER_SECONDS after start so that starting many processes
(or tests) does not write at once, then every PRUNE_EVERY_SECONDS. Several API processes each
sweeping is harmless: the DELETE is bounded by the `created_at` index and idempotent. A failed
sweep is logged and tried again at the next tick; it never stops the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tidings.inbox import EVENT_RETENTION_DAYS
from tidings.store import Store

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0
PRUNE_FIRST_AFTER_SECONDS = 60.0


async def prune_once(store: Store, now: datetime | None = None) -> int:
    """Delete events older than the retention; how many went."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=EVENT_RETENTION_DAYS)
    return await store.prune_inbox_events(cutoff)


async def run_pruner(
    store_now: Callable[[], Store | None],
    *,
    every_seconds: float | None = None,
    first_after_seconds: float | None = None,
) -> None:
    """Sweep forever (until cancelled). `store_now` gives the store in use, or None while the
    app has none (starting or stopping): that tick is skipped. The intervals default to the
    module's constants as they are when the sweep starts."""
    every = PRUNE_EVERY_SECONDS if every_seconds is None else every_seconds
    first = PRUNE_FIRST_AFTER_SECONDS if first_after_seconds is None else first_after_seconds
    await asyncio.sleep(first)
    while True:
        store = store_now()
        if store is not None:
            try:
                pruned = await prune_once(store)
            except Exception:
                log.exception("pruning the inbox event log failed; trying again later")
                pruned = 0
            if pruned:
                log.info("pruned %d inbox events over %d days old", pruned, EVENT_RETENTION_DAYS)
        await asyncio.sleep(every)
