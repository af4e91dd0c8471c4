"""Everything a broadcast checks before anything is written or started: the audience (not empty,
every listed user exists, the segment is known and has members), the template and its channels,
that the data renders on each channel, and its A/B test if it has one."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from starter.client_broadcast_models import BroadcastOptions, BroadcastRequest, parse_audience
from starter.client_experiments import ExperimentsMixin
from tidings import rendering
from tidings.broadcast_models import Audience, SegmentAudience, UnknownSegment, UserIdsAudience
from tidings.errors import InvalidRequest
from tidings.experiments import ExperimentConfig
from tidings.models import Channel, Template
from tidings.settings import Settings
from tidings.store import Store
from workflows.broadcast_io import BroadcastExperiment, BroadcastInput, RolloutVariant

# The experiment's own settings a broadcast's test may not set: the broadcast gives the template
# and data, everyone in the test share gets a variant (a holdout would get nothing at all) and
# the test stops at its decision, since the rollout is the promotion.
_SET_BY_THE_BROADCAST = {
    "template_id": "the broadcast's template is the default; give a variant its own template_id",
    "data": "the broadcast's data is the experiment's; give a variant its own data",
    "holdout_percent": "not in a broadcast: everyone in the test share gets a variant",
    "on_winner": "not in a broadcast: the rollout sends the winner to the rest",
}


class BroadcastChecksMixin(ExperimentsMixin):
    """`BroadcastsMixin`'s checks; a broadcast's experiment is parsed and resolved through
    `ExperimentsMixin`."""

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
                raise InvalidRequest("data", e.of_template(template.id)) from e
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


def experiment_id_for(broadcast_id: str) -> str:
    """The default id of a broadcast's experiment: experiment ids have no '-' (their
    notification ids are exp-<experiment>-<user>), so '-' becomes '_' and a hash of the
    broadcast id keeps two broadcasts apart that differ only there."""
    digest = hashlib.sha256(broadcast_id.encode()).hexdigest()[:8]
    return f"bc.{broadcast_id.replace('-', '_')[:48]}.{digest}"
