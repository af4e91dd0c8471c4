"""A bulk accepted durably, for more than `settings.bulk_inline_max` recipients to start: every
key claimed, every notification row and the fan-out's list written in one transaction, then one
`BulkStartWorkflow` (`bulk/<bulk_id>`) starts the runs a page at a time. The call returns once
the transaction has committed and the fan-out is started: a server start costs 5-6 ms of its
CPU, which no front door can hide for 10,000 recipients, while the transaction costs well under
1 ms per recipient. If the fan-out cannot be started (after retries) the bulk is released, claims
and rows with it, and its recipients come back `failed`.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from starter.client_bulk_checks import _atomic_outcomes, _Item, _reused
from starter.client_bulk_models import BulkRejected
from tidings.bulks import BulkRecord, BulkStartInput, bulk_queue, bulk_workflow_id
from tidings.errors import NotFound
from tidings.models import Template
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.bulks import BulkConflict, BulkEntry
from workflows.bulk import BulkStartWorkflow

# Attempts at starting a durable bulk's fan-out before it is released, and the pause before each
# retry: a server that refuses three starts over two seconds is down, not busy.
FANOUT_START_DELAYS = (0.3, 1.5)


class DurableBulkMixin:
    """The durable path of `BulkMixin.notify_many`, and `get_bulk` to follow it."""

    settings: Settings
    store: Store
    temporal: Client

    async def get_bulk(self, bulk_id: str) -> BulkRecord:
        """A bulk accepted durably: how many recipients it accepted, how many of their runs
        its fan-out has started so far, and its status."""
        record = await self.store.get_bulk(bulk_id)
        if record is None:
            raise NotFound("bulk", bulk_id)
        return record

    async def _accept_durably(
        self, items: list[_Item], to_start: list[_Item], template: Template, *, atomic: bool
    ) -> str:
        """One transaction for the whole bulk, then its fan-out; returns the bulk id."""
        bulk_id = uuid.uuid4().hex
        entries = []
        for item in to_start:
            prepared = item.prepared
            assert prepared is not None
            keyed = prepared.request.idempotency_key is not None
            entries.append(
                BulkEntry(
                    notification_id=prepared.notification_id,
                    user_id=prepared.request.user_id,
                    template_id=template.id,
                    template_version=prepared.template_version,
                    priority=prepared.priority,
                    payload=prepared.model_dump(mode="json"),
                    fingerprint=item.fingerprint if keyed else None,
                )
            )
        try:
            accepted = await self.store.accept_bulk(bulk_id, template.id, entries, atomic=atomic)
        except BulkConflict as e:
            for item in to_start:
                assert item.prepared is not None
                if item.prepared.notification_id in e.conflicts:
                    item.reject("idempotency_key", _reused(item.prepared.notification_id, "before"))
            raise BulkRejected(_atomic_outcomes(items)) from None
        for item in to_start:
            assert item.prepared is not None
            nid = item.prepared.notification_id
            if nid in accepted.conflicts:
                item.reject("idempotency_key", _reused(nid, "before"))
            else:
                item.done("existed" if nid in accepted.existed else "accepted")
        problem = await self._start_fanout(bulk_id)
        if problem is not None:
            reason = f"the bulk's fan-out could not be started ({problem}); nothing was kept"
            if await self.store.release_bulk(bulk_id, accepted.claimed, reason):
                for item in to_start:
                    if item.outcome is not None and item.outcome.outcome == "accepted":
                        item.done("failed", reason)
        return bulk_id

    async def _start_fanout(self, bulk_id: str) -> str | None:
        """Starts `bulk/<bulk_id>`, retrying (the id makes a repeat a no-op); None once it is
        started, else what the last attempt answered."""
        problem = ""
        for delay in (0.0, *FANOUT_START_DELAYS):
            await asyncio.sleep(delay)
            try:
                await self.temporal.start_workflow(
                    BulkStartWorkflow.run,
                    BulkStartInput(bulk_id=bulk_id),
                    id=bulk_workflow_id(bulk_id),
                    task_queue=bulk_queue(self.settings.task_queue),
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    static_summary=f"bulk {bulk_id}: starting its recipients' runs",
                )
                return None
            except WorkflowAlreadyStartedError:
                return None  # an earlier attempt started it, and it has finished already
            except Exception as e:  # an RPC error, a timeout: retried, then reported
                problem = f"{type(e).__name__}: {e}"
        return problem
