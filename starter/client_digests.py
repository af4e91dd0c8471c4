"""Digests in the Python API: register a digest key, feed it events, flush it, read its state.

    await tidings.register_digest(key="comments", template_id="comment_digest",
                                  window_seconds=3600, max_events=10, first_n=3, last_n=2)
    await tidings.digest_event("u1", "comments", "comment-981", {"author": "Ann"})

An event is written to the database first and then signalled to the user's DigestWorkflow
(signal-with-start): a repeated event id is stored once, and an event whose signal is lost (a
crash between the two, a run that was just finishing) is still read by the next run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from tidings.digests import DigestDefinition, DigestEvent
from tidings.errors import InvalidRequest, NotFound
from tidings.settings import Settings
from tidings.store import Store
from workflows.digest import DigestWorkflow
from workflows.digest_io import (
    DigestEventSignal,
    DigestInput,
    DigestStatus,
    FlushSignal,
    digest_workflow_id,
)


class DigestEventRef(BaseModel):
    user_id: str
    key: str
    event_id: str
    workflow_id: str
    duplicate: bool  # this event id was stored before: it counts once


def _parse_definition(value: DigestDefinition | dict[str, Any]) -> DigestDefinition:
    if isinstance(value, DigestDefinition):
        value = value.model_dump()
    try:
        return DigestDefinition.model_validate(value)
    except ValidationError as e:
        raise InvalidRequest.from_validation(e) from e


class DigestsClient:
    """Mixed into `starter.client.Tidings`."""

    settings: Settings
    store: Store
    temporal: Client

    async def register_digest(
        self, definition: DigestDefinition | dict[str, Any] | None = None, /, **fields: Any
    ) -> DigestDefinition:
        """Create or replace the digest key's definition. A running digest picks the new one up
        at its next run (after its current batch)."""
        parsed = _parse_definition(definition if definition is not None else fields)
        if await self.store.get_template(parsed.template_id) is None:
            raise InvalidRequest("template_id", f"no template {parsed.template_id!r}")
        return await self.store.upsert_digest(parsed)

    async def get_digest(self, key: str) -> DigestDefinition:
        definition = await self.store.get_digest(key)
        if definition is None:
            raise NotFound("digest", key)
        return definition

    async def list_digests(self, *, limit: int = 100) -> list[DigestDefinition]:
        return await self.store.list_digests(limit=limit)

    async def digest_event(
        self,
        user_id: str,
        key: str,
        event_id: str,
        data: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> DigestEventRef:
        """Add an event to the user's digest (store, then signal-with-start)."""
        try:
            event = DigestEvent(user_id=user_id, key=key, event_id=event_id, data=data or {}, at=at)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        await self._check_digest(event.user_id, event.key)
        stored = await self.store.add_digest_event(
            user_id=event.user_id,
            key=event.key,
            event_id=event.event_id,
            data=event.data,
            occurred_at=event.at,
        )
        # A repeat is signalled too: if the first attempt's signal was lost, this one counts it
        # (the workflow counts a row number once however often it hears of it).
        await self._signal_with_start(
            event.user_id,
            event.key,
            "event",
            DigestEventSignal(event_id=event.event_id, seq=stored.seq),
        )
        return DigestEventRef(
            user_id=event.user_id,
            key=event.key,
            event_id=event.event_id,
            workflow_id=digest_workflow_id(event.user_id, event.key),
            duplicate=stored.duplicate,
        )

    async def flush_digest(
        self, user_id: str, key: str, *, reason: str = "flushed by request"
    ) -> DigestStatus:
        """Close the user's current batch now and send it (nothing is sent when none waits)."""
        await self._check_digest(user_id, key)
        await self._signal_with_start(user_id, key, "flush", FlushSignal(reason=reason))
        return await self.digest_status(user_id, key)

    async def digest_status(self, user_id: str, key: str) -> DigestStatus:
        """The running digest's counters, or what the database holds when none runs."""
        await self._check_digest(user_id, key)
        handle: WorkflowHandle[Any, DigestStatus] = self.temporal.get_workflow_handle_for(
            DigestWorkflow.run, digest_workflow_id(user_id, key)
        )
        try:
            status = await handle.query(DigestWorkflow.status)
            if status.running:
                return status
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                raise
        stored = await self.store.pending_digest(user_id, key)
        return DigestStatus(
            user_id=user_id,
            key=key,
            running=False,
            pending=stored.pending,
            next_batch=stored.next_batch,
            events_sent=stored.sent_events,
            batches_sent=stored.next_batch - 1,
        )

    async def _check_digest(self, user_id: str, key: str) -> None:
        if await self.store.get_digest(key) is None:
            raise InvalidRequest("key", f"no digest {key!r}; register it first")
        if await self.store.get_user(user_id) is None:
            raise InvalidRequest("user_id", f"no user {user_id!r}")

    async def _signal_with_start(self, user_id: str, key: str, signal: str, arg: BaseModel) -> None:
        await self.temporal.start_workflow(
            DigestWorkflow.run,
            DigestInput(user_id=user_id, key=key, task_queue_base=self.settings.task_queue),
            id=digest_workflow_id(user_id, key),
            task_queue=self.settings.task_queue,
            start_signal=signal,
            start_signal_args=[arg],
            static_summary=f"digest {key} for {user_id}",
        )
