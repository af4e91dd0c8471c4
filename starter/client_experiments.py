"""A/B tests in the Python API: create a test, enrol users, read and stop it.

Each test is an `ExperimentWorkflow` (`experiment/<id>`); enrolment and stopping are updates to
it, retried while the parent hands over to its next run (continue-as-new).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tidings import rendering
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.experiments import ExperimentConfig, Variant, config_error, parse_config
from tidings.models import NotificationRequest, Template
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.experiments import ExperimentRecord
from workflows import search_attributes as sa
from workflows.experiment import BUSY, FINISHED, ExperimentWorkflow
from workflows.io import EnrollInput, Enrollment, ExperimentInput, ExperimentResults, StopInput
from workflows.queues import experiment_workflow_id

M = TypeVar("M", bound=BaseModel)


class ExperimentRef(BaseModel):
    experiment_id: str
    workflow_id: str


class ExperimentsMixin:
    """Mixed into `starter.client.Tidings`."""

    settings: Settings
    store: Store
    temporal: Client

    async def create_experiment(
        self, config: ExperimentConfig | dict[str, Any], *, event_budget: int | None = None
    ) -> ExperimentRef:
        """Check the test against the store (templates exist, support the channels and render
        with the test's data), pin each variant's template version, record it and start its
        workflow. Creating the same test again returns it; a different one under the same id is
        a Conflict."""
        raw = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
        parsed = self._parse_experiment(raw)
        variants = [
            await self._resolve_variant(parsed, i, v) for i, v in enumerate(parsed.variants)
        ]
        parsed = parsed.model_copy(update={"variants": variants})
        stored = parsed.model_dump(mode="json")
        if not await self.store.create_experiment(parsed.id, stored):
            existing = await self.store.get_experiment(parsed.id)
            if existing is None or existing.config != stored:
                raise Conflict(f"experiment {parsed.id!r} exists with a different configuration")
        wf_id = experiment_workflow_id(parsed.id)
        budget = {} if event_budget is None else {"event_budget": event_budget}
        # A test that ran before under this id (finished) is refused: ids are not reused.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.temporal.start_workflow(
                ExperimentWorkflow.run,
                ExperimentInput(
                    config=parsed,
                    task_queue_base=self.settings.task_queue,
                    engagement_window_hours=self.settings.engagement_window_hours,
                    **budget,
                ),
                id=wf_id,
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.EXPERIMENT, parsed.id)]
                ),
                static_summary=(
                    f"A/B test {parsed.id}: {len(parsed.variants)} variants,"
                    f" {parsed.rule.value}, {parsed.metric.value}"
                ),
            )
        return ExperimentRef(experiment_id=parsed.id, workflow_id=wf_id)

    def _parse_experiment(self, raw: dict[str, Any], prefix: str = "") -> ExperimentConfig:
        """The test's configuration, its attribution window within the engagement window;
        errors name the field after `prefix` (a broadcast's test is under `experiment.`)."""
        try:
            config = parse_config(raw)
        except ValidationError as e:
            field, reason = config_error(e)
            raise InvalidRequest(f"{prefix}{field}", reason) from e
        window_hours = config.attribution_window.total_seconds() / 3600
        if window_hours > self.settings.engagement_window_hours:
            raise InvalidRequest(
                f"{prefix}attribution_window",
                f"{window_hours:g} h is longer than the engagement window"
                f" ({self.settings.engagement_window_hours:g} h), after which nothing is recorded",
            )
        return config

    async def _resolve_variant(
        self, config: ExperimentConfig, i: int, v: Variant, *, broadcast: Template | None = None
    ) -> Variant:
        """Pin the variant's template version and check that it exists, has the channels and
        renders. In a broadcast's test (`broadcast`, its template) the fields are under
        `experiment.`, a variant naming the broadcast's template without a version gets the
        broadcast's, and the data renders as sent, with no sample data filling gaps."""
        field = f"{'' if broadcast is None else 'experiment.'}variants[{i}]"
        template_id = v.template_id or config.template_id
        version = v.template_version
        if version is None and broadcast is not None and template_id == broadcast.id:
            version = broadcast.version
        # A version given is kept (a broadcast's experiment pins its variants' versions).
        template = await self.store.get_template(template_id or "", version)
        if template is None and v.template_version is not None:
            raise InvalidRequest(
                f"{field}.template_version",
                f"template {template_id!r} has no version {v.template_version}",
            )
        if template is None:
            name = "template_id" if v.template_id else "template_id (the experiment's)"
            raise InvalidRequest(f"{field}.{name}", f"no template {template_id!r}")
        for channel in v.channels or []:
            if channel not in template.channels:
                supported = ", ".join(c.value for c in template.channels)
                raise InvalidRequest(
                    f"{field}.channels",
                    f"template {template.id!r} v{template.version} does not support"
                    f" {channel.value} (it supports {supported})",
                )
        samples = template.sample_data if broadcast is None else {}
        data = {**samples, **config.data, **(v.data or {})}
        for channel in v.channels or template.channels:
            try:
                await rendering.render_async(template, channel, data)
            except rendering.TemplateError as e:
                raise InvalidRequest(f"{field}.data", f"{e.reason} ({e.field})") from e
        return v.model_copy(
            update={
                "template_id": template.id,
                "template_version": template.version,
                "priority": template.default_priority,
                "fallback": template.fallback,
            }
        )

    async def _experiment(self, experiment_id: str) -> tuple[ExperimentRecord, ExperimentConfig]:
        record = await self.store.get_experiment(experiment_id)
        if record is None:
            raise NotFound("experiment", experiment_id)
        return record, ExperimentConfig.model_validate(record.config)

    def _experiment_handle(self, experiment_id: str) -> WorkflowHandle[Any, ExperimentResults]:
        return self.temporal.get_workflow_handle_for(
            ExperimentWorkflow.run, experiment_workflow_id(experiment_id)
        )

    async def enroll(
        self, experiment_id: str, user_id: str, *, data: dict[str, Any] | None = None
    ) -> Enrollment:
        """Put a user in the test: their arm (or `holdout`) and the notification sent them. The
        same user again gets the first enrolment back, and nothing is sent again."""
        record, config = await self._experiment(experiment_id)
        data = data or {}
        try:
            request = NotificationRequest(user_id=user_id, template_id="x", data=data)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        user = await self.store.get_user(request.user_id)
        if user is None:
            raise InvalidRequest("user_id", f"no user {user_id!r}")
        for v in config.variants:  # the user may get any of them
            template = await self.store.get_template(v.template_id or "", v.template_version)
            if template is None:
                raise InvalidRequest("experiment", f"template {v.template_id!r} has gone")
            merged = {**config.data, **(v.data or {}), **data}
            for channel in v.channels or template.channels:
                try:
                    await rendering.render_async(template, channel, merged, locale=user.locale)
                except rendering.TemplateError as e:
                    raise InvalidRequest("data", f"{e.reason} (variant {v.name}, {e.field})") from e
        handle = self._experiment_handle(experiment_id)
        arg = EnrollInput(user_id=user_id, data=data)
        result: Enrollment = await self._experiment_update(
            handle, record, "enroll", arg, Enrollment
        )
        return result

    async def _experiment_update(
        self,
        handle: WorkflowHandle[Any, ExperimentResults],
        record: ExperimentRecord,
        name: str,
        arg: BaseModel,
        result_type: type[M],
    ) -> M:
        delay = 0.05
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                result: M = await handle.execute_update(name, arg, result_type=result_type)
                return result
            except WorkflowUpdateFailedError as e:
                cause = e.cause
                busy = isinstance(cause, ApplicationError) and cause.type == BUSY
                if busy and loop.time() < deadline:  # handing over to its next run
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                if isinstance(cause, ApplicationError) and cause.type == "InvalidRequest":
                    field, _, reason = message.partition(": ")
                    raise InvalidRequest(field, reason) from e
                if isinstance(cause, ApplicationError) and cause.type == FINISHED:
                    raise Conflict(message) from e
                raise Conflict(f"experiment {record.id}: {message}") from e
            except RPCError as e:
                description = await self._describe(handle)
                if description is WorkflowExecutionStatus.RUNNING:
                    # An update admitted while the run continued as new is aborted, not
                    # executed; the next run takes it.
                    if loop.time() < deadline:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    raise
                current = await self.store.get_experiment(record.id) or record
                ending = current.ending or "ended"
                raise Conflict(
                    f"cannot {name}: experiment {record.id} has finished ({ending})"
                    + (f": {current.reason}" if current.reason else "")
                ) from e

    async def _describe(self, handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
        try:
            return (await handle.describe()).status
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def experiment_results(self, experiment_id: str) -> ExperimentResults:
        """What the parent decided on: live while the test runs, else its recorded outcome."""
        record, config = await self._experiment(experiment_id)
        with contextlib.suppress(RPCError):
            result: ExperimentResults = await self._experiment_handle(experiment_id).query(
                ExperimentWorkflow.results
            )
            return result
        if record.outcome is not None:
            return ExperimentResults.model_validate(record.outcome)
        return ExperimentResults(
            experiment_id=config.id,
            status=record.status,
            rule=config.rule,
            metric=config.metric,
            alpha=config.alpha,
            started_at=record.created_at,
        )

    async def stop_experiment(
        self, experiment_id: str, reason: str = "stopped by hand"
    ) -> ExperimentResults:
        record, _ = await self._experiment(experiment_id)
        try:
            arg = StopInput(reason=reason)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        handle = self._experiment_handle(experiment_id)
        return await self._experiment_update(handle, record, "stop", arg, ExperimentResults)

    async def list_experiments(self, *, limit: int = 100) -> list[ExperimentRecord]:
        return await self.store.list_experiments(limit=limit)
