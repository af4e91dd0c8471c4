"""An experiment's configuration, as its creator gives it and as it crosses Temporal. Pure: no
Temporal, no I/O.

Validated at the edge with `parse_config` (unknown fields refused, naming the field; problems as
(field, reason) with `config_error`); across Temporal the same models ignore unknown fields.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tidings.models import Channel, Identifier, Priority, check_data_size

HOLDOUT = "holdout"
DEFAULT_ALPHA = 0.05
DEFAULT_TUNING_SAMPLE = 10_000
DEFAULT_FLOOR_SHARE = 0.05


class Metric(StrEnum):
    OPENED = "opened"  # an open or a click (a click implies the message was seen)
    CLICKED = "clicked"
    CONVERTED = "converted"

    @property
    def engagement_types(self) -> tuple[str, ...]:
        return ("opened", "clicked") if self is Metric.OPENED else (self.value,)


class Rule(StrEnum):
    SEQUENTIAL = "sequential"
    BANDIT = "bandit"


class OnWinner(StrEnum):
    STOP = "stop"
    PROMOTE = "promote"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> Any:
    """'90s', '15m', '12h', '7d', '2w' as well as pydantic's seconds and ISO 8601."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


class _Config(BaseModel):
    """Ignores unknown fields when it crosses Temporal (a newer client may add one); the edges
    validate with `context={"edge": True}`, which refuses them, naming the field."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_at_the_edge(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("edge"):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"{unknown[0]}: unknown field")
        return data


class Variant(_Config):
    """One arm: what its users are sent. Template, data and channels each fall back to the
    experiment's own when left out."""

    name: Identifier
    template_id: Identifier | None = None
    data: dict[str, Any] | None = None
    channels: list[Channel] | None = None
    control: bool = False
    # Resolved by the front door when the experiment is created; the workflow uses these.
    template_version: int | None = None
    priority: Priority | None = None
    fallback: list[Channel] | None = None

    @field_validator("data")
    @classmethod
    def _bounded(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else check_data_size(v)

    @field_validator("name")
    @classmethod
    def _not_holdout(cls, v: str) -> str:
        if v == HOLDOUT:
            raise ValueError(f"{HOLDOUT!r} is reserved for the users who get nothing")
        return v


class ExperimentConfig(_Config):
    # No '-': notification ids are exp-<experiment>-<user>, which must not be ambiguous.
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]{0,63}$")
    name: str = Field(default="", max_length=200)
    template_id: Identifier | None = None  # the default for variants that name none
    data: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(min_length=2, max_length=10)
    split: list[int] | None = None  # whole percentages, one per variant; equal when left out
    holdout_percent: int = Field(default=0, ge=0, le=50)
    metric: Metric = Metric.CONVERTED
    attribution_window: timedelta = timedelta(hours=72)
    minimum_sample: int = Field(default=100, ge=10)  # per variant, before anything is decided
    minimum_lift: float = Field(default=0.0, ge=0.0, le=10.0)  # relative, for futility
    max_duration: timedelta = timedelta(days=30)
    check_every: timedelta = timedelta(minutes=15)  # how often the parent reads the counts
    rule: Rule = Rule.SEQUENTIAL
    on_winner: OnWinner = OnWinner.STOP
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0.0, lt=0.5)
    tuning_sample: int = Field(default=DEFAULT_TUNING_SAMPLE, ge=100)
    floor_share: float = Field(default=DEFAULT_FLOOR_SHARE, ge=0.0, le=0.2)  # per arm, bandit

    _durations = field_validator(
        "attribution_window", "max_duration", "check_every", mode="before"
    )(parse_duration)

    @field_validator("attribution_window", "max_duration", "check_every")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("must be at least 1 second")
        return v

    @field_validator("data")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: names must be unique")
        controls = [v.name for v in self.variants if v.control]
        if len(controls) != 1:
            raise ValueError(
                f"variants: exactly one must have control: true (found {len(controls)})"
            )
        for i, v in enumerate(self.variants):
            if v.template_id is None and self.template_id is None:
                raise ValueError(
                    f"variants[{i}].template_id: give one here or template_id for the experiment"
                )
        if self.split is not None:
            if len(self.split) != len(self.variants):
                raise ValueError(
                    f"split: {len(self.split)} shares for {len(self.variants)} variants"
                )
            if any(s < 1 for s in self.split):
                raise ValueError("split: every share must be a whole percentage of at least 1")
            if sum(self.split) != 100:
                raise ValueError(f"split: shares must sum to 100, not {sum(self.split)}")
        if self.max_duration <= self.check_every:
            raise ValueError("max_duration: must be longer than check_every")
        if self.rule is Rule.BANDIT and self.floor_share * len(self.variants) > 1:
            raise ValueError("floor_share: the floors of all arms exceed 100%")
        return self

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.control)

    @property
    def shares(self) -> list[float]:
        """The configured split as fractions (equal shares when none is given)."""
        if self.split is None:
            return [1.0 / len(self.variants)] * len(self.variants)
        return [s / 100 for s in self.split]

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def parse_config(data: Any) -> ExperimentConfig:
    """Validate at the edge: unknown fields are refused (pydantic ValidationError)."""
    return ExperimentConfig.model_validate(data, context={"edge": True})


_FIELD = re.compile(r"^[A-Za-z_][\w.\[\]]*$")


def config_error(error: ValidationError) -> tuple[str, str]:
    """(field, reason) of a config's first problem. Checks across fields say which field in
    their message ("split: ..."), since pydantic locates them at the model itself."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    head, sep, rest = message.partition(": ")
    if sep and _FIELD.match(head):
        return (f"{loc}.{head}" if loc else head), rest
    return loc or "config", message
