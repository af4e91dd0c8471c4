"""/v1/experiments: A/B tests created, enrolled into, read, stopped and listed.

Enrolling needs the send scope, creating or stopping the admin scope, reading the read scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import Field

from starter.client import ExperimentRef
from starter.http.auth import Requires
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.models import Identifier, Model
from tidings.store.experiments import ExperimentRecord
from workflows.io import Enrollment, ExperimentResults

router = APIRouter()

ExperimentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]{0,63}$")]


class EnrollBody(Model):
    user_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)


class StopBody(Model):
    reason: str = Field(default="stopped by hand", max_length=500)


@router.post(
    "/experiments",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Create an A/B test and start it (200 when the same test exists already)",
    status_code=201,
    response_model=ExperimentRef,
)
async def create_experiment(
    body: Annotated[
        dict[str, Any],
        Body(
            description="The test: id, template_id, data, variants (one with control: true),"
            " split, holdout_percent, metric, attribution_window, minimum_sample,"
            " minimum_lift, max_duration, check_every, rule, on_winner, alpha, tuning_sample,"
            " floor_share. Unknown fields are refused.",
        ),
    ],
    response: Response,
    tidings: Api,
) -> ExperimentRef:
    existed = await tidings.store.get_experiment(str(body.get("id", ""))) is not None
    ref = await tidings.create_experiment(body)
    if existed:
        response.status_code = 200
    return ref


@router.get(
    "/experiments",
    dependencies=[Requires(Scope.READ)],
    summary="List A/B tests, newest first",
    response_model=list[ExperimentRecord],
)
async def list_experiments(tidings: Api) -> list[ExperimentRecord]:
    return await tidings.list_experiments()


@router.get(
    "/experiments/{experiment_id}",
    dependencies=[Requires(Scope.READ)],
    summary="Results: each variant's counts and intervals, and the decision",
    response_model=ExperimentResults,
)
async def experiment_results(experiment_id: ExperimentId, tidings: Api) -> ExperimentResults:
    return await tidings.experiment_results(experiment_id)


@router.post(
    "/experiments/{experiment_id}/enrollments",
    dependencies=[Requires(Scope.SEND)],
    summary="Enrol a user (201; 200 with the first enrolment when enrolled already)",
    status_code=201,
    response_model=Enrollment,
)
async def enroll(
    experiment_id: ExperimentId, body: EnrollBody, response: Response, tidings: Api
) -> Enrollment:
    enrollment = await tidings.enroll(experiment_id, body.user_id, data=body.data)
    if enrollment.duplicate:
        response.status_code = 200
    return enrollment


@router.post(
    "/experiments/{experiment_id}/stop",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Stop an A/B test by hand; its ending is recorded with the figures",
    response_model=ExperimentResults,
)
async def stop_experiment(
    experiment_id: ExperimentId, tidings: Api, body: StopBody | None = None
) -> ExperimentResults:
    return await tidings.stop_experiment(experiment_id, (body or StopBody()).reason)
