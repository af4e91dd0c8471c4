"""/v1/templates: registered (a new version only when something changed) and read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from starter.http.auth import Requires
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.errors import NotFound
from tidings.models import Template, TemplateDefinition

router = APIRouter()


@router.post(
    "/templates",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Register a template (201 for a new version, 200 when nothing changed)",
    status_code=201,
    response_model=Template,
)
async def register_template(body: TemplateDefinition, response: Response, tidings: Api) -> Template:
    try:
        before: Template | None = await tidings.get_template(body.id)
    except NotFound:
        before = None
    template = await tidings.register_template(body)
    if before is not None and before.version == template.version:
        response.status_code = 200
    return template


@router.get(
    "/templates",
    dependencies=[Requires(Scope.READ)],
    summary="List templates (latest versions)",
    response_model=list[Template],
)
async def list_templates(tidings: Api) -> list[Template]:
    return await tidings.list_templates()


@router.get(
    "/templates/{template_id}",
    dependencies=[Requires(Scope.READ)],
    summary="Get a template",
    response_model=Template,
)
async def get_template(
    template_id: str, tidings: Api, version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
) -> Template:
    return await tidings.get_template(template_id, version)
