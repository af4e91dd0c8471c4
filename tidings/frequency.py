"""Frequency caps: at most N non-critical notifications per user per hour in a category.

Counted in the database at send time (`Store.recent_sends`). Two notifications planned at the
same instant can both see N-1 and both go out: the cap is a guard against floods, not a hard
quota, and we accept that race rather than serialising every send per user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

WINDOW = timedelta(hours=1)
ANY_CATEGORY = "*"


class CapPolicy(StrEnum):
    DEFER = "defer"  # wait until the oldest counted send leaves the window
    SUPPRESS = "suppress"  # drop the notification, with the reason recorded


@dataclass(frozen=True)
class CapDecision:
    allowed: bool
    reason: str | None = None
    defer_until: datetime | None = None


@dataclass(frozen=True)
class FrequencyCaps:
    limits: Mapping[str, int] = field(default_factory=dict)
    policy: CapPolicy = CapPolicy.DEFER

    def limit_for(self, category: str) -> int | None:
        return self.limits.get(category, self.limits.get(ANY_CATEGORY))

    def decide(self, *, category: str, count: int, earliest: datetime | None) -> CapDecision:
        limit = self.limit_for(category)
        if limit is None or count < limit:
            return CapDecision(allowed=True)
        reason = (
            f"frequency cap: {count} {category!r} notifications in the last hour (limit {limit})"
        )
        if self.policy is CapPolicy.SUPPRESS or earliest is None:
            return CapDecision(allowed=False, reason=reason)
        return CapDecision(allowed=False, reason=reason, defer_until=earliest + WINDOW)
