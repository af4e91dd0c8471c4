"""Turning what a caller passed (a model, or a dict of its fields) into the model, with a
validation failure reported as `InvalidRequest` naming the field: one way for every part of the
Python API."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tidings.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], value: M | dict[str, Any] | None, prefix: str = "") -> M:
    """`value` as a `model`; None is an empty dict (every field at its default, or missing)."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value or {})
    except ValidationError as e:
        raise InvalidRequest.from_validation(e, prefix) from e
