"""quiet_hours_end: windows in the user's own timezone, wrapping midnight, across DST.

The window is [start, end): a message at exactly `start` is held, one at exactly `end` goes out.
An `end` that does not exist (spring forward) resolves to the first instant after the gap; an
ambiguous `end` (fall back) resolves to its first occurrence.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tidings.models import QuietHours
from tidings.routing import quiet_hours_end

NY = "America/New_York"
SYD = "Australia/Sydney"
NIGHT = QuietHours(start=time(22), end=time(7))


def z(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def local(
    zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone), fold=fold)


def end(at: datetime, zone: str, quiet: QuietHours | None) -> datetime | None:
    return quiet_hours_end(at=at, timezone=zone, quiet_hours=quiet)


def test_no_quiet_hours() -> None:
    assert end(z(2024, 1, 1, 3), "UTC", None) is None


def test_outside_window() -> None:
    assert end(z(2024, 1, 1, 12), "UTC", NIGHT) is None
    assert end(z(2024, 1, 1, 21, 59, 59), "UTC", NIGHT) is None


def test_wrapping_window_before_and_after_midnight() -> None:
    assert end(z(2024, 1, 1, 23, 30), "UTC", NIGHT) == z(2024, 1, 2, 7)
    assert end(z(2024, 1, 2, 0, 0), "UTC", NIGHT) == z(2024, 1, 2, 7)
    assert end(z(2024, 1, 2, 6, 59), "UTC", NIGHT) == z(2024, 1, 2, 7)


def test_boundaries_start_inclusive_end_exclusive() -> None:
    assert end(z(2024, 1, 1, 22), "UTC", NIGHT) == z(2024, 1, 2, 7)
    assert end(z(2024, 1, 2, 7), "UTC", NIGHT) is None
    assert end(z(2024, 1, 2, 6, 59, 59, 999999), "UTC", NIGHT) == z(2024, 1, 2, 7)
    daytime = QuietHours(start=time(13), end=time(15))
    assert end(z(2024, 1, 1, 13), "UTC", daytime) == z(2024, 1, 1, 15)
    assert end(z(2024, 1, 1, 15), "UTC", daytime) is None
    assert end(z(2024, 1, 1, 12, 59), "UTC", daytime) is None


def test_uses_the_users_timezone_not_utc() -> None:
    # 03:00Z is 12:00 in Tokyo (outside) and 22:00 the day before in New York in winter (inside).
    at = z(2024, 1, 10, 3)
    assert end(at, "Asia/Tokyo", NIGHT) is None
    assert end(at, NY, NIGHT) == z(2024, 1, 10, 12)  # 07:00 EST
    assert end(z(2024, 7, 10, 3), NY, NIGHT) == z(2024, 7, 10, 11)  # 07:00 EDT


def test_result_is_utc_and_input_offset_does_not_matter() -> None:
    at = local("Europe/Paris", 2024, 1, 1, 23, 30)  # 22:30Z, inside a UTC-based night
    got = end(at, "UTC", NIGHT)
    assert got == z(2024, 1, 2, 7)
    assert got is not None and got.tzinfo is UTC


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        end(datetime(2024, 1, 1, 23), "UTC", NIGHT)


# --- America/New_York: spring forward 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z) ---------------


def test_ny_spring_forward_end_in_gap_resolves_to_first_instant_after_it() -> None:
    quiet = QuietHours(start=time(22), end=time(2, 30))
    assert end(local(NY, 2024, 3, 9, 23), NY, quiet) == z(2024, 3, 10, 7)  # 03:00 EDT
    assert end(local(NY, 2024, 3, 10, 1, 59), NY, quiet) == z(2024, 3, 10, 7)
    assert end(local(NY, 2024, 3, 10, 3, 0), NY, quiet) is None  # the window has ended
    # The next day 02:30 exists again.
    assert end(local(NY, 2024, 3, 10, 23), NY, quiet) == z(2024, 3, 11, 6, 30)


def test_ny_spring_forward_night_is_one_hour_shorter() -> None:
    got = end(local(NY, 2024, 3, 9, 22), NY, NIGHT)
    assert got == z(2024, 3, 10, 11)  # 07:00 EDT
    assert got - local(NY, 2024, 3, 9, 22) == timedelta(hours=8)


def test_ny_spring_forward_start_in_gap() -> None:
    quiet = QuietHours(start=time(2, 30), end=time(6))
    assert end(local(NY, 2024, 3, 10, 1, 59), NY, quiet) is None
    assert end(z(2024, 3, 10, 7), NY, quiet) == z(2024, 3, 10, 10)  # from 03:00 EDT to 06:00 EDT


def test_ny_near_day_window_runs_into_the_next_one_across_the_gap() -> None:
    # 02:45-02:30 is quiet for all but 15 minutes a day. On 2024-03-10 both 02:30 and 02:45 fall
    # in the gap and resolve to 03:00 EDT, so one window ends where the next begins: the answer
    # is the end of the next one, never an instant that is itself quiet.
    quiet = QuietHours(start=time(2, 45), end=time(2, 30))
    assert end(local(NY, 2024, 3, 9, 12), NY, quiet) == z(2024, 3, 11, 6, 30)


# --- America/New_York: fall back 2024-11-03 02:00 EDT -> 01:00 EST (06:00Z) ---------------------


def test_ny_fall_back_ambiguous_end_resolves_to_first_occurrence() -> None:
    quiet = QuietHours(start=time(23), end=time(1, 30))
    first_0115 = local(NY, 2024, 11, 3, 1, 15, fold=0)  # 05:15Z, EDT
    second_0115 = local(NY, 2024, 11, 3, 1, 15, fold=1)  # 06:15Z, EST
    assert end(local(NY, 2024, 11, 2, 23, 30), NY, quiet) == z(2024, 11, 3, 5, 30)
    assert end(first_0115, NY, quiet) == z(2024, 11, 3, 5, 30)
    # The clock passes 01:15 again after the window ended: not quiet a second time.
    assert end(second_0115, NY, quiet) is None


def test_ny_fall_back_night_is_one_hour_longer() -> None:
    got = end(local(NY, 2024, 11, 2, 22), NY, NIGHT)
    assert got == z(2024, 11, 3, 12)  # 07:00 EST
    assert got - local(NY, 2024, 11, 2, 22) == timedelta(hours=10)


def test_ny_fall_back_ambiguous_start() -> None:
    quiet = QuietHours(start=time(1, 30), end=time(4))
    assert end(local(NY, 2024, 11, 3, 1, 20, fold=0), NY, quiet) is None
    # The window opened at the first 01:30, so the second pass through 01:20 is inside it.
    assert end(local(NY, 2024, 11, 3, 1, 20, fold=1), NY, quiet) == z(2024, 11, 3, 9)


# --- Australia/Sydney: DST ends 2024-04-07 03:00 AEDT -> 02:00 AEST (16:00Z on the 6th);
# --- DST starts 2024-10-06 02:00 AEST -> 03:00 AEDT (16:00Z on the 5th) -------------------------


def test_sydney_dst_end_ambiguous_end_first_occurrence() -> None:
    quiet = QuietHours(start=time(22), end=time(2, 30))
    assert end(local(SYD, 2024, 4, 6, 23), SYD, quiet) == z(2024, 4, 6, 15, 30)  # 02:30 AEDT
    assert end(local(SYD, 2024, 4, 7, 2, 40, fold=1), SYD, quiet) is None  # 02:40 AEST


def test_sydney_dst_start_end_in_gap() -> None:
    quiet = QuietHours(start=time(22), end=time(2, 30))
    assert end(local(SYD, 2024, 10, 5, 23), SYD, quiet) == z(2024, 10, 5, 16)  # 03:00 AEDT
    assert end(local(SYD, 2024, 10, 6, 3, 5), SYD, quiet) is None


def test_sydney_night_lengths_across_both_transitions() -> None:
    autumn = local(SYD, 2024, 4, 6, 22)
    spring = local(SYD, 2024, 10, 5, 22)
    autumn_end, spring_end = end(autumn, SYD, NIGHT), end(spring, SYD, NIGHT)
    assert autumn_end == z(2024, 4, 6, 21)  # 07:00 AEST
    assert spring_end == z(2024, 10, 5, 20)  # 07:00 AEDT
    # Aware datetimes in the same zone subtract as wall clocks, so compare in UTC.
    assert autumn_end - autumn.astimezone(UTC) == timedelta(hours=10)
    assert spring_end - spring.astimezone(UTC) == timedelta(hours=8)


# --- properties ---------------------------------------------------------------------------------

ZONES = [
    "UTC",
    NY,
    SYD,
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # transitions at midnight
    "America/Sao_Paulo",  # had DST starting at midnight until 2019
    "Pacific/Apia",  # skipped a whole day in 2011
]


def _wall_inside(wall: time, quiet: QuietHours) -> bool:
    if quiet.start < quiet.end:
        return quiet.start <= wall < quiet.end
    return wall >= quiet.start or wall < quiet.end


def check_quiet_hours_end(at: datetime, zone_name: str, quiet: QuietHours) -> None:
    """The answer is later than `at`, at most two windows away, and not itself in quiet hours; and a
    moment whose local time is unambiguously inside the window does get an answer."""
    zone = ZoneInfo(zone_name)
    got = quiet_hours_end(at=at, timezone=zone_name, quiet_hours=quiet)
    wall = at.astimezone(zone)
    unambiguous = wall.replace(fold=0).utcoffset() == wall.replace(fold=1).utcoffset()
    if got is None:
        if unambiguous:
            assert not _wall_inside(wall.time(), quiet), (at, zone_name, quiet)
        return
    assert got > at, (at, zone_name, quiet, got)
    # A window of nearly a day can run into the next one across a gap: two windows at most.
    assert got - at <= timedelta(hours=50), (at, zone_name, quiet, got)
    assert not _wall_inside(got.astimezone(zone).time(), quiet), (at, zone_name, quiet, got)
    assert quiet_hours_end(at=got, timezone=zone_name, quiet_hours=quiet) is None


def _random_time(rng: random.Random) -> time:
    return time(rng.randrange(24), rng.choice([0, 0, 15, 30, 45, rng.randrange(60)]))


def test_property_seeded_sweep_around_transitions() -> None:
    """Runs without hypothesis: instants clustered around each zone's transitions."""
    rng = random.Random(20240310)
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        # Find transitions by scanning hourly offsets over a few years.
        t, transitions = z(2010, 1, 1), []
        prev = t.astimezone(zone).utcoffset()
        while t < z(2025, 1, 1):
            t += timedelta(hours=1)
            off = t.astimezone(zone).utcoffset()
            if off != prev:
                transitions.append(t)
            prev = off
        anchors = transitions or [z(2024, 1, 1)]
        for _ in range(400):
            base = rng.choice(anchors)
            at = base + timedelta(minutes=rng.randrange(-30 * 60, 30 * 60))
            start, stop = _random_time(rng), _random_time(rng)
            if start == stop:
                continue
            check_quiet_hours_end(at, zone_name, QuietHours(start=start, end=stop))


def test_property_hypothesis() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    minutes = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
    windows = st.tuples(minutes, minutes).filter(lambda w: w[0] != w[1])
    instants = st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    )

    def prop(at: datetime, zone: str, window: tuple[time, time]) -> None:
        check_quiet_hours_end(at, zone, QuietHours(start=window[0], end=window[1]))

    run = hypothesis.settings(max_examples=500, deadline=None)(
        hypothesis.given(at=instants, zone=st.sampled_from(ZONES), window=windows)(prop)
    )
    run()
