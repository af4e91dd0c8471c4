"""Send-time optimisation: when, within a window, a notification is most likely to be seen.

The model is an hour-of-week histogram (168 buckets, Monday 00:00 = bucket 0) of the user's
opened and clicked events in the user's OWN timezone, over the last `HISTORY` (90 days). Few
users have enough history for 168 buckets, so the user's counts are smoothed toward the
population's shape with a Dirichlet prior: the score of hour h is

    (user_count[h] + K * population_share[h]) / (user_total + K)

with `PRIOR_WEIGHT` K = 24, i.e. the population counts as 24 pseudo-events; a user's own history
outweighs it once they have engaged more than 24 times. A user with no history gets the
population's shape; with no history anywhere every hour scores the same and the window's first hour
wins (send now). This is how OneSignal ("intelligent delivery"), Braze ("Intelligent Timing")
and Airship ("optimal send time") describe theirs: the per-user engagement hour, falling back to
the population's when the user has too little.

The chosen instant is the start of the best local hour in [start, latest] plus a stable per-user
offset of 0-14 minutes (`minute_offset`), so that a million users who like 19:00 are not all sent
to at 19:00:00. Candidate hours are walked in local wall-clock time and mapped to UTC through
zoneinfo: a wall time skipped by a DST change is not a candidate, a repeated one is a candidate
twice (both instants; ties go to the earlier). Ties between hours go to the earlier instant.

Pure: no I/O, no clock. The store counts events per quarter hour of UTC (`BUCKET_MINUTES`);
`local_histogram` turns those into the user's local hours (every zone's offset is a multiple of
15 minutes, so a quarter hour of UTC lies in one local hour, DST or not), and planning calls
`choose`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

HOURS_OF_WEEK = 168
PRIOR_WEIGHT = 24.0  # K: how many pseudo-events the population's shape is worth
HISTORY = timedelta(days=90)  # engagement older than this does not count
DEFAULT_WITHIN = timedelta(hours=24)
MAX_WITHIN = timedelta(days=7)  # a week covers every hour of the week once
JITTER_MINUTES = 15  # the per-user offset into the chosen hour is 0..JITTER_MINUTES-1
BUCKET_MINUTES = 15  # the store counts events per quarter hour of UTC

_HOUR = timedelta(hours=1)


def hour_of_week(local: datetime) -> int:
    """Monday 00:00-00:59 is 0, Sunday 23:00-23:59 is 167 (of a wall-clock time)."""
    return local.weekday() * 24 + local.hour


def minute_offset(user_id: str) -> int:
    """A stable offset into the hour for this user (sha256, never the salted `hash()`)."""
    digest = hashlib.sha256(user_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % JITTER_MINUTES


def local_histogram(
    buckets: Iterable[tuple[datetime, float]],
    timezone: str,
    *,
    bucket_minutes: int = BUCKET_MINUTES,
) -> list[float]:
    """Counts per UTC bucket (its start, aware; `bucket_minutes` long) as counts per local hour
    of the week. Every zone's offset is a multiple of 15 minutes (Asia/Kolkata +5:30,
    Pacific/Chatham +12:45), so a 15-minute bucket lies in one local hour; a longer one that
    overlaps two is split between them by overlap."""
    zone = ZoneInfo(timezone)
    counts = [0.0] * HOURS_OF_WEEK
    for start, count in buckets:
        local = start.astimezone(zone)
        h = hour_of_week(local)
        left = 60 - local.minute  # minutes of local hour h from the bucket's start
        first = 1.0 if bucket_minutes <= left else left / bucket_minutes
        counts[h] += count * first
        if first < 1:
            counts[(h + 1) % HOURS_OF_WEEK] += count * (1 - first)
    return counts


def population_histogram(rows: Iterable[tuple[str, datetime, float]]) -> list[float]:
    """(timezone, UTC hour, count) rows of every user, each in its own local time, summed."""
    by_zone: dict[str, list[tuple[datetime, float]]] = {}
    for timezone, start, count in rows:
        by_zone.setdefault(timezone, []).append((start, count))
    total = [0.0] * HOURS_OF_WEEK
    for timezone, buckets in by_zone.items():
        for h, c in enumerate(local_histogram(buckets, timezone)):
            total[h] += c
    return total


@dataclass(frozen=True)
class EngagementModel:
    """Smoothed hour-of-week scores (they sum to 1) and where they came from."""

    scores: tuple[float, ...]
    user_events: float  # the user's engaged events in the history
    population_events: float

    @property
    def source(self) -> str:
        if self.user_events > 0:
            return "user"
        return "population" if self.population_events > 0 else "none"


def smooth(
    user: Sequence[float], population: Sequence[float], *, prior_weight: float = PRIOR_WEIGHT
) -> EngagementModel:
    """The posterior mean of the user's hour-of-week distribution under a Dirichlet prior of
    `prior_weight` pseudo-events shaped like the population (uniform without one)."""
    if len(user) != HOURS_OF_WEEK or len(population) != HOURS_OF_WEEK:
        raise ValueError(f"histograms have {HOURS_OF_WEEK} buckets")
    if prior_weight <= 0:
        raise ValueError("prior_weight must be positive")
    n, p = float(sum(user)), float(sum(population))
    share = [c / p for c in population] if p > 0 else [1 / HOURS_OF_WEEK] * HOURS_OF_WEEK
    scores = tuple(
        (u + prior_weight * s) / (n + prior_weight) for u, s in zip(user, share, strict=True)
    )
    return EngagementModel(scores=scores, user_events=n, population_events=p)


@dataclass(frozen=True)
class Choice:
    at: datetime  # UTC
    local: datetime  # the same instant in the user's timezone
    score: float
    reason: str


def _wall_instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the clock in `zone` reads `wall` (naive): none in a DST gap,
    two in a repeated hour, else one."""
    found: list[datetime] = []
    for fold in (0, 1):
        utc = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if utc.astimezone(zone).replace(tzinfo=None) == wall and utc not in found:
            found.append(utc)
    return sorted(found)


def candidates(
    *, timezone: str, start: datetime, latest: datetime, offset_minutes: int
) -> Iterator[tuple[datetime, datetime]]:
    """(UTC instant, local wall hour) for every local hour that meets [start, latest]: the
    hour's start plus the offset, or `start` itself for the hour already under way."""
    zone = ZoneInfo(timezone)
    jitter = timedelta(minutes=offset_minutes)
    wall = start.astimezone(zone).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    wall -= _HOUR  # the hour before too: around a repeated hour the local clock steps back
    stop = latest.astimezone(zone).replace(tzinfo=None) + _HOUR
    while wall <= stop:
        for at in _wall_instants(wall + jitter, zone):
            if at < start:
                # The current hour still counts, from now: its end is an hour after its start.
                hour_end = at - jitter + _HOUR
                if hour_end <= start:
                    continue
                at = start
            if at <= latest:
                yield at, wall
        wall += _HOUR


def choose(
    model: EngagementModel,
    *,
    timezone: str,
    start: datetime,
    latest: datetime,
    user_id: str,
) -> Choice:
    """The instant in [start, latest] at the start (plus the user's offset) of the local hour
    with the highest score; ties go to the earliest. `start` when the window is empty."""
    start, latest = start.astimezone(UTC), latest.astimezone(UTC)
    zone = ZoneInfo(timezone)
    best: tuple[float, datetime] | None = None
    for at, wall in candidates(
        timezone=timezone, start=start, latest=latest, offset_minutes=minute_offset(user_id)
    ):
        score = model.scores[hour_of_week(wall)]
        if best is None or score > best[0] or (score == best[0] and at < best[1]):
            best = (score, at)
    if best is None:
        best = (0.0, start)
    score, at = best
    local = at.astimezone(zone)
    return Choice(at=at, local=local, score=score, reason=_reason(model, local, timezone))


def _reason(model: EngagementModel, local: datetime, timezone: str) -> str:
    when = f"{local:%a %H:%M} {timezone}"
    if model.source == "user":
        events = round(model.user_events)
        return (
            f"optimal send time {when}: the user's best hour ({events} engaged events in"
            f" {HISTORY.days} days, smoothed toward everyone's)"
        )
    if model.source == "population":
        return f"optimal send time {when}: everyone's best hour (no history for this user yet)"
    return f"optimal send time {when}: no engagement history yet, so the window's first hour"


class WindowError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def window_end(
    *,
    now: datetime,
    scheduled_at: datetime | None,
    expires_at: datetime | None,
    within: timedelta | None,
    latest: datetime | None,
) -> datetime:
    """The latest send time of an optimal send, checked at the edge: the window starts at the
    send time (`scheduled_at`, else `now`) and ends `within` (default 24 h) later or at
    `latest`, at most `MAX_WITHIN` after its start and before `expires_at`."""
    start = max(now, scheduled_at) if scheduled_at is not None else now
    if latest is None:
        end = start + (within if within is not None else DEFAULT_WITHIN)
        field = "optimal_within"
    else:
        end, field = latest, "optimal_latest"
        if end <= start:
            raise WindowError(field, f"{end.isoformat()} is not after the send time")
    if end - start > MAX_WITHIN:
        raise WindowError(field, f"the window may be at most {MAX_WITHIN.days} days long")
    if expires_at is not None and end >= expires_at:
        end = expires_at - timedelta(seconds=1)  # choose a time it can still be sent at
    return end
