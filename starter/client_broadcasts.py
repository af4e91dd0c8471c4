"""Broadcasts in the Python API: send a template to a list of users, every user or a segment;
watch, pause, resume and cancel it.

    ref = await tidings.broadcast("welcome", ["u1", "u2"], {"app_name": "MyApp"})
    await tidings.broadcast("news", "all", data, channels=["email"])
    await tidings.broadcast("news", {"kind": "segment", "segment": "active"}, data)

Everything is checked before anything is written or started (`starter.client_broadcast_checks`);
what `broadcast` takes and answers is in `starter.client_broadcast_models`, re-exported here.

With `experiment={"share": 0.1, "variants": [...], ...}` the broadcast first runs an A/B test
on that share of its audience and sends the winner to the rest (README, Broadcasts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.client_broadcast_checks import BroadcastChecksMixin, experiment_id_for
from starter.client_broadcast_models import (
    AudienceArg,
    BroadcastOptions,
    BroadcastRef,
    BroadcastRequest,
    parse_audience,
)
from tidings.broadcast_models import Audience, SegmentAudience, UserIdsAudience
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.models import Channel, Priority
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.broadcasts import BroadcastRecord
from workflows import search_attributes as sa
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_io import (
    BroadcastProgress,
    CancelBroadcastInput,
    PauseInput,
    ResumeInput,
)
from workflows.queues import broadcast_workflow_id


class BroadcastsMixin(BroadcastChecksMixin):
    """Mixed into `starter.client.Tidings`; a broadcast's experiment is created through
    `ExperimentsMixin.create_experiment`."""

    settings: Settings
    store: Store
    temporal: Client

    async def broadcast(
        self,
        template_id: str,
        audience: AudienceArg,
        data: dict[str, Any] | None = None,
        channels: Sequence[Channel | str] | None = None,
        *,
        broadcast_id: str | None = None,
        priority: Priority | str | None = None,
        page_size: int = 500,
        pages_per_run: int = 50,
        concurrency: int = 20,
        experiment: dict[str, Any] | None = None,
    ) -> BroadcastRef:
        prepared, config = await self._prepare_with_experiment(
            BroadcastRequest(
                template_id,
                audience,
                data,
                channels,
                broadcast_id=broadcast_id,
                priority=priority,
                page_size=page_size,
                pages_per_run=pages_per_run,
                concurrency=concurrency,
                experiment=experiment,
            )
        )
        bid, parsed = prepared.broadcast_id, prepared.audience
        template = await self.store.get_template(prepared.template_id, prepared.template_version)
        assert template is not None  # just read by _prepare_broadcast or _prepare_with_experiment
        if not await self.store.create_broadcast(
            broadcast_id=bid,
            template_id=template.id,
            template_version=template.version,
            audience=parsed,
            channels=prepared.channels,
            priority=prepared.priority,
        ):
            raise Conflict(f"broadcast {bid!r} exists; choose another id", field="broadcast_id")
        attributes = []
        if config is not None:
            # Started before the broadcast, which enrols into it from its first page.
            await self.create_experiment(config)
            attributes.append(SearchAttributePair(sa.EXPERIMENT, config.id))
        wf_id = broadcast_workflow_id(bid)
        await self.temporal.start_workflow(
            BroadcastWorkflow.run,
            prepared,
            id=wf_id,
            task_queue=self.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.BROADCAST, bid),
                    SearchAttributePair(sa.TEMPLATE, template.id),
                    SearchAttributePair(sa.PRIORITY, prepared.priority.value),
                    SearchAttributePair(sa.STATUS, "running"),
                    SearchAttributePair(
                        sa.CHANNELS, [c.value for c in prepared.channels or template.channels]
                    ),
                    *attributes,
                ]
            ),
            static_summary=(
                f"broadcast {bid}: {template.id} v{template.version} to {_describe(parsed)}"
                + (
                    f"; experiment {config.id} on {prepared.experiment.share:.0%} first"
                    if config is not None and prepared.experiment is not None
                    else ""
                )
            ),
            memo={"audience": _describe(parsed), "template": f"{template.id} v{template.version}"},
        )
        return BroadcastRef(broadcast_id=bid, workflow_id=wf_id)

    def _broadcast_handle(self, broadcast_id: str) -> WorkflowHandle[Any, BroadcastProgress]:
        return self.temporal.get_workflow_handle_for(
            BroadcastWorkflow.run, broadcast_workflow_id(broadcast_id)
        )

    async def broadcast_progress(self, broadcast_id: str) -> BroadcastProgress:
        """Live from the workflow while it runs (or its final answer), else the database."""
        try:
            return await self._broadcast_handle(broadcast_id).query(BroadcastWorkflow.progress)
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                raise
        record = await self._broadcast_record(broadcast_id)
        return BroadcastProgress(
            broadcast_id=record.id,
            status=record.status,
            pages=record.pages,
            cursor="",
            counters=record.counters,
            detail=record.phase,
            experiment_id=record.experiment_id,
        )

    async def _broadcast_record(self, broadcast_id: str) -> BroadcastRecord:
        record = await self.store.get_broadcast(broadcast_id)
        if record is None:
            raise NotFound("broadcast", broadcast_id)
        return record

    async def pause_broadcast(self, broadcast_id: str) -> BroadcastProgress:
        return await self._broadcast_update(broadcast_id, "pause", PauseInput())

    async def resume_broadcast(self, broadcast_id: str) -> BroadcastProgress:
        return await self._broadcast_update(broadcast_id, "resume", ResumeInput())

    async def cancel_broadcast(
        self, broadcast_id: str, reason: str = "cancelled by request"
    ) -> BroadcastProgress:
        try:
            arg = CancelBroadcastInput(reason=reason)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        return await self._broadcast_update(broadcast_id, "cancel", arg)

    async def list_broadcasts(self, *, limit: int = 100) -> list[BroadcastRecord]:
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit", f"must be between 1 and 1000, got {limit}")
        return await self.store.list_broadcasts(limit=limit)

    async def _broadcast_update(
        self, broadcast_id: str, name: str, arg: BaseModel
    ) -> BroadcastProgress:
        record = await self._broadcast_record(broadcast_id)
        try:
            result: BroadcastProgress = await self._broadcast_handle(broadcast_id).execute_update(
                name, arg, result_type=BroadcastProgress
            )
            return result
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise Conflict(message) from e
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                raise Conflict(f"cannot {name}: broadcast {broadcast_id} is {record.status}") from e
            raise


def _describe(audience: Audience) -> str:
    if isinstance(audience, UserIdsAudience):
        return f"{len(audience.user_ids)} listed users"
    if isinstance(audience, SegmentAudience):
        return f"segment {audience.segment}"
    return "every user"


__all__ = [
    "AudienceArg",
    "BroadcastOptions",
    "BroadcastRef",
    "BroadcastRequest",
    "BroadcastsMixin",
    "experiment_id_for",
    "parse_audience",
]
