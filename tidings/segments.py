"""Segments: a named audience described by rules over users, evaluated in SQL.

The rule language is a small tree: `{"all": [...]}` or `{"any": [...]}` of rules, or one
condition `{"field": ..., "op": ..., "value": ...}`. Fields and their operators:

- `id`, `locale`, `timezone`: eq, ne, in, not_in, prefix (value a string, or a list for in/not_in)
- `email`, `phone`: exists, not_exists (no value)
- `created_at`: before, after (an ISO timestamp with offset), within_days (a number of days)
- `attributes.<name>` (letters, digits, _ and -): eq, ne (string, number or boolean), in,
  not_in (a list of those), gt, gte, lt, lte (a number), prefix (a string), exists, not_exists
- `channels.<channel>`: eq (true: the user's global switch lets the channel through; a channel
  never switched is on)
- `engagement.opened`, `engagement.clicked`, `engagement.converted`: eq, gt, gte, lt, lte (a whole
  number) — the user's notifications with at least one such event (an open counts a click too) in
  the last `days` days (default 30)
- `engagement.rate`: gt, gte, lt, lte (a number in [0, 1]) — of the user's notifications created in
  the last `days` days and sent, the share opened or clicked; a user sent nothing has no rate and
  matches no comparison

A window of N days (`days`, `within_days`) starts at the UTC midnight N days before today's: the N
whole days before today and today so far. Membership changes only at midnight.

A rule that names an unknown field or operator, or gives a value of the wrong kind, is refused
with the path of the offending part, e.g. `rules.all[1].op`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from tidings.models import Channel, Identifier, Model

MAX_RULES = 100  # conditions in one segment
MAX_DEPTH = 6
MAX_LIST = 1000

Scalar = str | int | float | bool

STRING_OPS = {"eq", "ne", "in", "not_in", "prefix"}
PRESENCE_OPS = {"exists", "not_exists"}
TIME_OPS = {"before", "after", "within_days"}
ATTRIBUTE_OPS = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "prefix"} | PRESENCE_OPS
COUNT_OPS = {"eq", "gt", "gte", "lt", "lte"}
RATE_OPS = {"gt", "gte", "lt", "lte"}
ENGAGEMENT_TYPES = ("opened", "clicked", "converted")
# Attribute names go into JSON paths: plain names only.
_attribute_re = re.compile(r"^attributes\.[A-Za-z0-9_-]{1,64}$")


class SegmentError(ValueError):
    """A rule that cannot be evaluated; `path` names the part, e.g. rules.any[0].value."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Condition(Model):
    field: str
    op: str
    value: Any = None
    days: int = 30  # engagement fields only


class Group(Model):
    combine: str  # "all" or "any"
    rules: list[Condition | Group]


Rule = Condition | Group


def _ops(field: str) -> set[str] | None:
    if field in ("id", "locale", "timezone"):
        return STRING_OPS
    if field in ("email", "phone"):
        return PRESENCE_OPS
    if field == "created_at":
        return TIME_OPS
    if _attribute_re.match(field):
        return ATTRIBUTE_OPS
    if field.startswith("channels."):
        return {"eq"}
    if field in (f"engagement.{t}" for t in ENGAGEMENT_TYPES):
        return COUNT_OPS
    if field == "engagement.rate":
        return RATE_OPS
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_value(path: str, field: str, op: str, value: Any) -> Any:
    where = f"{path}.value"
    if op in PRESENCE_OPS:
        if value is not None:
            raise SegmentError(where, f"{op} takes no value")
        return None
    if value is None:
        raise SegmentError(where, f"{op} needs a value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise SegmentError(where, f"{op} needs a list of 1 to {MAX_LIST} values")
        for i, item in enumerate(value):
            _check_scalar(f"{where}[{i}]", field, item)
        return value
    if field.startswith("channels."):
        if not isinstance(value, bool):
            raise SegmentError(where, "give true or false")
        return value
    if field == "created_at":
        if op == "within_days":
            if not _is_number(value) or value <= 0:
                raise SegmentError(where, "give a positive number of days")
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as e:
            raise SegmentError(where, f"not an ISO timestamp: {value!r}") from e
        if parsed.tzinfo is None:
            raise SegmentError(where, "give the timestamp with an offset (e.g. Z)")
        return parsed.isoformat()
    if field.startswith("engagement."):
        if field == "engagement.rate":
            if not _is_number(value) or not 0 <= value <= 1:
                raise SegmentError(where, "give a number between 0 and 1")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SegmentError(where, "give a whole number, 0 or more")
        return value
    if op in ("gt", "gte", "lt", "lte"):
        if not _is_number(value):
            raise SegmentError(where, f"{op} compares numbers; got {value!r}")
        return value
    if op == "prefix":
        if not isinstance(value, str) or not value:
            raise SegmentError(where, "prefix needs a non-empty string")
        return value
    _check_scalar(where, field, value)
    return value


def _check_scalar(where: str, field: str, value: Any) -> None:
    if field.startswith("attributes."):
        if not isinstance(value, str | int | float | bool):
            raise SegmentError(where, f"give a string, number or boolean; got {value!r}")
    elif not isinstance(value, str):
        raise SegmentError(where, f"give a string; got {value!r}")


def parse_rule(raw: Any, path: str = "rules", depth: int = 1) -> Rule:
    """The rule tree from JSON, checked; SegmentError names the first bad part."""
    if not isinstance(raw, dict):
        raise SegmentError(path, "give an object: {all: [...]}, {any: [...]} or a condition")
    if depth > MAX_DEPTH:
        raise SegmentError(path, f"rules nest at most {MAX_DEPTH} levels")
    groups = [k for k in ("all", "any") if k in raw]
    if groups:
        key = groups[0]
        extra = sorted(set(raw) - {key})
        if extra:
            raise SegmentError(f"{path}.{extra[0]}", f"unexpected beside {key!r}")
        items = raw[key]
        if not isinstance(items, list) or not items:
            raise SegmentError(f"{path}.{key}", "give a non-empty list of rules")
        rules = [parse_rule(r, f"{path}.{key}[{i}]", depth + 1) for i, r in enumerate(items)]
        return Group(combine=key, rules=rules)
    extra = sorted(set(raw) - {"field", "op", "value", "days"})
    if extra:
        raise SegmentError(f"{path}.{extra[0]}", "unknown key (give field, op, value)")
    field = raw.get("field")
    if not isinstance(field, str):
        raise SegmentError(f"{path}.field", "give the field to test, e.g. locale")
    ops = _ops(field)
    if ops is None:
        raise SegmentError(f"{path}.field", f"unknown field {field!r}")
    if field.startswith("channels."):
        name = field.removeprefix("channels.")
        if name not in {c.value for c in Channel}:
            raise SegmentError(f"{path}.field", f"unknown channel {name!r}")
    op = raw.get("op")
    if op not in ops:
        raise SegmentError(f"{path}.op", f"unknown operator {op!r} for {field}: {sorted(ops)}")
    value = _check_value(path, field, op, raw.get("value"))
    days = raw.get("days", 30)
    if "days" in raw and not field.startswith("engagement."):
        raise SegmentError(f"{path}.days", "days applies to engagement fields only")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise SegmentError(f"{path}.days", "give a whole number of days from 1 to 3650")
    return Condition(field=field, op=op, value=value, days=days)


def count_conditions(rule: Rule) -> int:
    if isinstance(rule, Condition):
        return 1
    return sum(count_conditions(r) for r in rule.rules)


def dump_rule(rule: Rule) -> dict[str, Any]:
    if isinstance(rule, Group):
        return {rule.combine: [dump_rule(r) for r in rule.rules]}
    out: dict[str, Any] = {"field": rule.field, "op": rule.op}
    if rule.value is not None:
        out["value"] = rule.value
    if rule.field.startswith("engagement."):
        out["days"] = rule.days
    return out


class SegmentDefinition(Model):
    """What a caller saves: a name and its rules (checked by `parse_rule`)."""

    name: Identifier
    rules: dict[str, Any]

    @field_validator("rules")
    @classmethod
    def _valid(cls, v: dict[str, Any]) -> dict[str, Any]:
        rule = parse_rule(v)
        if count_conditions(rule) > MAX_RULES:
            raise SegmentError("rules", f"at most {MAX_RULES} conditions")
        return dump_rule(rule)

    def rule(self) -> Rule:
        return parse_rule(self.rules)


class Segment(SegmentDefinition):
    created_at: datetime


class SegmentPage(Model):
    name: str
    user_ids: list[str]
    next_after: str | None = Field(
        default=None, description="Give as `after` for the next page; null at the end"
    )
