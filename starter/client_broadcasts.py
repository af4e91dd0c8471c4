"""Broadcasts in the Python API: send a template to a list of users, every user or a segment;
watch, pause, resume and cancel it.

    ref = await tidings.broadcast("welcome", ["u1", "u2"], {"app_name": "MyApp"})
    await tidings.broadcast("news", "all", data, channels=["email"])
    await tidings.broadcast("news", {"kind": "segment", "segment": "active"}, data)

Everything is checked here before anything is written or started: the audience (not empty, every
listed user exists, the segment is known and has members), the template and its channels, and
that the data renders on each channel.

With `experiment={"share": 0.1, "variants": [...], ...}` the broadcast first runs an A/B test
on that share of its audience and sends the winner to the rest (README, Broadcasts).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.client_experiments import ExperimentsMixin
from tidings import rendering
from tidings.broadcast_models import (
    BROADCAST_ID_PATTERN,
    AllUsersAudience,
    Audience,
    SegmentAudience,
    UnknownSegment,
    UserIdsAudience,
)
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.experiments import ExperimentConfig
from tidings.models import Channel, Priority, Template
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.broadcasts import BroadcastRecord
from workflows import search_attributes as sa
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_io import (
    BroadcastExperiment,
    BroadcastInput,
    BroadcastProgress,
    CancelBroadcastInput,
    PauseInput,
    ResumeInput,
    RolloutVariant,
)
from workflows.queues import broadcast_workflow_id

_KINDS: dict[str, type[UserIdsAudience | AllUsersAudience | SegmentAudience]] = {
    "users": UserIdsAudience,
    "all": AllUsersAudience,
    "segment": SegmentAudience,
}
AudienceArg = Audience | Sequence[str] | str | dict[str, Any]


class BroadcastOptions(BaseModel):
    """The edge's checks on the knobs (extra keys refused)."""

    model_config = {"extra": "forbid"}

    broadcast_id: str | None = Field(default=None, pattern=BROADCAST_ID_PATTERN)
    channels: list[Channel] | None = Field(default=None, min_length=1)
    priority: Priority | None = None
    page_size: int = Field(default=500, ge=1, le=2000)
    pages_per_run: int = Field(default=50, ge=1, le=1000)
    concurrency: int = Field(default=20, ge=1, le=500)


@dataclass(frozen=True)
class BroadcastRequest:
    """The arguments of `broadcast` as given, unchecked: what its private steps pass along."""

    template_id: str
    audience: AudienceArg
    data: dict[str, Any] | None = None
    channels: Sequence[Channel | str] | None = None
    broadcast_id: str | None = None
    priority: Priority | str | None = None
    page_size: int = 500
    pages_per_run: int = 50
    concurrency: int = 20
    experiment: dict[str, Any] | None = None


# The experiment's own settings a broadcast's test may not set: the broadcast gives the template
# and data, everyone in the test share gets a variant (a holdout would get nothing at all) and
# the test stops at its decision, since the rollout is the promotion.
_SET_BY_THE_BROADCAST = {
    "template_id": "the broadcast's template is the default; give a variant its own template_id",
    "data": "the broadcast's data is the experiment's; give a variant its own data",
    "holdout_percent": "not in a broadcast: everyone in the test share gets a variant",
    "on_winner": "not in a broadcast: the rollout sends the winner to the rest",
}


class BroadcastRef(BaseModel):
    broadcast_id: str
    workflow_id: str


def parse_audience(audience: AudienceArg) -> Audience:
    """A list of ids, "all", "segment:<name>", or the model / its dict form."""
    if isinstance(audience, UserIdsAudience | AllUsersAudience | SegmentAudience):
        return audience
    value: Any = audience
    if isinstance(audience, str):
        if audience == "all":
            value = {"kind": "all"}
        elif audience.startswith("segment:"):
            value = {"kind": "segment", "segment": audience.removeprefix("segment:")}
        else:
            raise InvalidRequest(
                "audience", f"{audience!r}: use a list of user ids, 'all' or 'segment:<name>'"
            )
    elif not isinstance(audience, dict):
        value = {"kind": "users", "user_ids": list(audience)}
    kind = value.get("kind") if isinstance(value, dict) else None
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidRequest("audience.kind", f"{kind!r}: must be one of {', '.join(_KINDS)}")
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidRequest.from_validation(e, "audience.") from e


class BroadcastsMixin(ExperimentsMixin):
    """Mixed into `starter.client.Tidings`; a broadcast's experiment is created through
    `ExperimentsMixin.create_experiment`."""

    settings: Settings
    store: Store
    temporal: Client

    async def _prepare_broadcast(self, request: BroadcastRequest) -> BroadcastInput:
        """Every check `broadcast` makes, nothing written or started: the workflow's input
        (template version pinned). A schedule's broadcast action is prepared here too."""
        prepared, _ = await self._prepare_with_experiment(request)
        return prepared

    async def _prepare_with_experiment(
        self, request: BroadcastRequest
    ) -> tuple[BroadcastInput, ExperimentConfig | None]:
        try:
            options = BroadcastOptions.model_validate(
                {
                    "broadcast_id": request.broadcast_id,
                    "channels": list(request.channels) if request.channels is not None else None,
                    "priority": request.priority,
                    "page_size": request.page_size,
                    "pages_per_run": request.pages_per_run,
                    "concurrency": request.concurrency,
                }
            )
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        parsed = parse_audience(request.audience)
        data = dict(request.data or {})
        template = await self.store.get_template(request.template_id)
        if template is None:
            raise InvalidRequest("template_id", f"no template {request.template_id!r}")
        for channel in options.channels or []:
            if channel not in template.channels:
                supported = ", ".join(c.value for c in template.channels)
                raise InvalidRequest(
                    "channels",
                    f"template {template.id!r} does not support {channel.value}"
                    f" (it supports {supported})",
                )
        for channel in options.channels or template.channels:
            try:
                await rendering.render_async(template, channel, data)
            except rendering.TemplateError as e:
                raise InvalidRequest(
                    "data", f"{e.reason} (template {template.id}, {e.field})"
                ) from e
        await self._check_audience(parsed)
        bid = options.broadcast_id or uuid.uuid4().hex[:16]
        config, plan = None, None
        if request.experiment is not None:
            config, plan = await self._prepare_experiment(
                bid, template, data, options.channels, request.experiment
            )
        prepared = BroadcastInput(
            broadcast_id=bid,
            template_id=template.id,
            template_version=template.version,
            audience=parsed,
            data=data,
            channels=options.channels,
            priority=options.priority or template.default_priority,
            page_size=options.page_size,
            pages_per_run=options.pages_per_run,
            concurrency=options.concurrency,
            task_queue_base=self.settings.task_queue,
            experiment=plan,
        )
        return prepared, config

    async def _prepare_experiment(
        self,
        broadcast_id: str,
        template: Template,
        data: dict[str, Any],
        channels: list[Channel] | None,
        experiment: dict[str, Any],
    ) -> tuple[ExperimentConfig, BroadcastExperiment]:
        """Check the test (its share, its variants' templates, versions, channels and data),
        nothing created: the experiment's configuration and what the workflow needs of it."""
        if not isinstance(experiment, dict):
            raise InvalidRequest("experiment", "must be an object with share and variants")
        raw = dict(experiment)
        for key, why in _SET_BY_THE_BROADCAST.items():
            if key in raw:
                raise InvalidRequest(f"experiment.{key}", why)
        share = raw.pop("share", None)
        if share is None:
            raise InvalidRequest("experiment.share", "required: the share of the audience tested")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            raise InvalidRequest(
                "experiment.share", f"{share!r}: must be a number between 0 and 1, exclusive"
            )
        variants = raw.get("variants")
        if not isinstance(variants, list) or len(variants) < 2:
            raise InvalidRequest("experiment.variants", "at least two variants are needed")
        # Variants without channels of their own test on the broadcast's channels.
        raw["variants"] = [
            {"channels": [c.value for c in channels]} | v
            if channels is not None and isinstance(v, dict)
            else v
            for v in variants
        ]
        raw.setdefault("id", experiment_id_for(broadcast_id))
        raw.update(template_id=template.id, data=data)
        config = self._parse_experiment(raw, "experiment.")
        if await self.store.get_experiment(config.id) is not None:
            raise InvalidRequest(
                "experiment.id", f"experiment {config.id!r} exists; a broadcast's test is its own"
            )
        resolved = [
            await self._resolve_variant(config, i, v, broadcast=template)
            for i, v in enumerate(config.variants)
        ]
        config = config.model_copy(update={"variants": resolved})
        plan = BroadcastExperiment(
            experiment_id=config.id,
            share=float(share),
            control=config.control.name,
            variants=[
                RolloutVariant(
                    name=v.name,
                    template_id=v.template_id or template.id,
                    template_version=v.template_version or template.version,
                    data={**data, **(v.data or {})},
                    channels=v.channels,
                )
                for v in resolved
            ],
            check_every_seconds=config.check_every.total_seconds(),
            max_duration_seconds=config.max_duration.total_seconds(),
        )
        return config, plan

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
        assert template is not None  # just read by _prepare_broadcast
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

    async def _check_audience(self, audience: Audience) -> None:
        if isinstance(audience, UserIdsAudience):
            wanted = list(dict.fromkeys(audience.user_ids))
            found = set(await self.store.audience_page(audience, "", len(wanted)))
            for i, user_id in enumerate(audience.user_ids):
                if user_id not in found:
                    raise InvalidRequest(f"audience.user_ids[{i}]", f"no user {user_id!r}")
            return
        try:
            first = await self.store.audience_page(audience, "", 1)
        except UnknownSegment as e:
            raise InvalidRequest("audience.segment", str(e)) from e
        if not first:
            if isinstance(audience, SegmentAudience):
                raise InvalidRequest(
                    "audience.segment", f"segment {audience.segment!r} has no members"
                )
            raise InvalidRequest("audience", "there are no users to send to")

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


def experiment_id_for(broadcast_id: str) -> str:
    """The default id of a broadcast's experiment: experiment ids have no '-' (their
    notification ids are exp-<experiment>-<user>), so '-' becomes '_' and a hash of the
    broadcast id keeps two broadcasts apart that differ only there."""
    digest = hashlib.sha256(broadcast_id.encode()).hexdigest()[:8]
    return f"bc.{broadcast_id.replace('-', '_')[:48]}.{digest}"


def _describe(audience: Audience) -> str:
    if isinstance(audience, UserIdsAudience):
        return f"{len(audience.user_ids)} listed users"
    if isinstance(audience, SegmentAudience):
        return f"segment {audience.segment}"
    return "every user"
