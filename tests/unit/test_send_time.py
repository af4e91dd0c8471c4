"""The send-time model (tidings.send_time): local hour-of-week histograms, smoothing toward the
population, and the choice of the best hour in a window across DST changes and odd offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tidings import send_time
from tidings.send_time import (
    HOURS_OF_WEEK,
    EngagementModel,
    WindowError,
    choose,
    hour_of_week,
    local_histogram,
    minute_offset,
    population_histogram,
    smooth,
    window_end,
)

EMPTY = [0.0] * HOURS_OF_WEEK


def peaked(*hours: int, weight: float = 10.0) -> list[float]:
    counts = [0.0] * HOURS_OF_WEEK
    for h in hours:
        counts[h] += weight
    return counts


def local_hour(weekday: int, hour: int) -> int:
    return weekday * 24 + hour


def model_peaking_at(weekday: int, hour: int) -> EngagementModel:
    return smooth(peaked(local_hour(weekday, hour), weight=50), EMPTY)


# --- histograms ----------------------------------------------------------------------------------


def test_hour_of_week_starts_on_monday() -> None:
    assert hour_of_week(datetime(2026, 11, 30, 0, 30)) == 0  # a Monday
    assert hour_of_week(datetime(2026, 12, 6, 23, 59)) == 167  # a Sunday


def test_local_histogram_uses_the_users_timezone() -> None:
    # 18:00 UTC on Monday is 19:00 in Berlin (winter) and 13:00 in New York.
    bucket = [(datetime(2026, 11, 30, 18, tzinfo=UTC), 3)]
    assert local_histogram(bucket, "Europe/Berlin")[local_hour(0, 19)] == 3
    assert local_histogram(bucket, "America/New_York")[local_hour(0, 13)] == 3


def test_local_histogram_follows_dst_per_bucket() -> None:
    # The same UTC hour is 19:00 in Berlin in winter and 20:00 in summer.
    winter = (datetime(2026, 1, 5, 18, tzinfo=UTC), 1)  # Monday
    summer = (datetime(2026, 7, 6, 18, tzinfo=UTC), 1)  # Monday
    counts = local_histogram([winter, summer], "Europe/Berlin")
    assert counts[local_hour(0, 19)] == 1
    assert counts[local_hour(0, 20)] == 1


@pytest.mark.parametrize(
    ("timezone", "local_start", "first_share"),
    [
        ("Asia/Kolkata", (0, 15), 0.5),  # +5:30: 10:00 UTC is 15:30 local
        ("Pacific/Chatham", (0, 23), 0.25),  # +13:45 in (southern) summer: 10:00 UTC is 23:45
    ],
)
def test_a_utc_hour_straddling_two_local_hours_is_split_by_overlap(
    timezone: str, local_start: tuple[int, int], first_share: float
) -> None:
    bucket = [(datetime(2026, 11, 30, 10, tzinfo=UTC), 4)]
    counts = local_histogram(bucket, timezone, bucket_minutes=60)
    h = local_hour(*local_start)
    assert counts[h] == pytest.approx(4 * first_share)
    assert counts[(h + 1) % HOURS_OF_WEEK] == pytest.approx(4 * (1 - first_share))
    assert sum(counts) == pytest.approx(4)


@pytest.mark.parametrize(
    ("utc", "timezone", "local"),
    [
        ((10, 15), "Asia/Kolkata", (0, 15)),  # 15:45
        ((10, 30), "Asia/Kolkata", (0, 16)),  # 16:00
        ((10, 0), "Pacific/Chatham", (0, 23)),  # 23:45 (+13:45 in the southern summer)
        ((10, 15), "Pacific/Chatham", (1, 0)),  # Tuesday 00:00
    ],
)
def test_a_quarter_hour_of_utc_lies_in_one_local_hour(
    utc: tuple[int, int], timezone: str, local: tuple[int, int]
) -> None:
    counts = local_histogram([(datetime(2026, 11, 30, *utc, tzinfo=UTC), 2)], timezone)
    assert counts[local_hour(*local)] == 2 and sum(counts) == 2


def test_population_histogram_puts_every_user_in_their_own_time() -> None:
    at = datetime(2026, 11, 30, 18, tzinfo=UTC)
    counts = population_histogram([("Europe/Berlin", at, 2), ("America/New_York", at, 5)])
    assert counts[local_hour(0, 19)] == 2
    assert counts[local_hour(0, 13)] == 5


# --- smoothing and fallback ----------------------------------------------------------------------


def test_a_new_user_gets_the_populations_shape() -> None:
    population = peaked(local_hour(2, 20), weight=100)
    model = smooth(EMPTY, population)
    assert model.source == "population"
    assert max(range(HOURS_OF_WEEK), key=lambda h: model.scores[h]) == local_hour(2, 20)


def test_with_no_history_anywhere_every_hour_scores_the_same() -> None:
    model = smooth(EMPTY, EMPTY)
    assert model.source == "none"
    assert all(score == pytest.approx(1 / HOURS_OF_WEEK) for score in model.scores)


def test_a_little_user_history_is_pulled_toward_the_population() -> None:
    population = peaked(local_hour(0, 9), weight=1000)
    few = peaked(local_hour(0, 21), weight=3)  # 3 events < K = 24 pseudo-events
    model = smooth(few, population)
    assert model.scores[local_hour(0, 9)] > model.scores[local_hour(0, 21)]
    many = peaked(local_hour(0, 21), weight=60)  # 60 > 24: the user's own hour wins
    model = smooth(many, population)
    assert model.scores[local_hour(0, 21)] > model.scores[local_hour(0, 9)]


def test_smoothed_scores_are_the_dirichlet_posterior_mean() -> None:
    user = peaked(0, weight=6)
    population = [1.0] * HOURS_OF_WEEK
    model = smooth(user, population, prior_weight=24)
    assert model.scores[0] == pytest.approx((6 + 24 / 168) / 30)
    assert model.scores[1] == pytest.approx((24 / 168) / 30)
    assert sum(model.scores) == pytest.approx(1)


def test_smooth_refuses_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="168"):
        smooth([1.0], EMPTY)
    with pytest.raises(ValueError, match="prior_weight"):
        smooth(EMPTY, EMPTY, prior_weight=0)


# --- choosing the hour ---------------------------------------------------------------------------


def test_minute_offset_is_stable_and_inside_the_first_quarter_hour() -> None:
    assert minute_offset("ada") == minute_offset("ada")
    assert {minute_offset(f"u{i}") for i in range(200)} <= set(range(15))
    assert len({minute_offset(f"u{i}") for i in range(200)}) > 5


def test_chooses_the_best_local_hour_in_the_users_timezone() -> None:
    start = datetime(2026, 11, 30, 6, tzinfo=UTC)  # Monday 07:00 in Berlin
    choice = choose(
        model_peaking_at(0, 19),
        timezone="Europe/Berlin",
        start=start,
        latest=start + timedelta(hours=24),
        user_id="ada",
    )
    assert choice.local.hour == 19 and choice.local.minute == minute_offset("ada")
    assert choice.at == datetime(2026, 11, 30, 18, minute_offset("ada"), tzinfo=UTC)
    assert "Europe/Berlin" in choice.reason and "user's best hour" in choice.reason


def test_the_best_hour_outside_the_window_is_not_chosen() -> None:
    start = datetime(2026, 11, 30, 6, tzinfo=UTC)
    model = smooth(
        peaked(local_hour(0, 19), weight=50) + [0.0] * 0, peaked(local_hour(0, 10), weight=5)
    )
    choice = choose(
        model, timezone="Europe/Berlin", start=start, latest=start + timedelta(hours=6), user_id="b"
    )
    assert start <= choice.at <= start + timedelta(hours=6)
    assert choice.local.hour == 10


def test_the_hour_under_way_counts_from_now() -> None:
    start = datetime(2026, 11, 30, 18, 40, tzinfo=UTC)  # 19:40 in Berlin, inside the best hour
    choice = choose(
        model_peaking_at(0, 19),
        timezone="Europe/Berlin",
        start=start,
        latest=start + timedelta(hours=24),
        user_id="ada",
    )
    assert choice.at == start


def test_ties_go_to_the_earliest_instant() -> None:
    start = datetime(2026, 11, 30, 6, 20, tzinfo=UTC)
    choice = choose(
        smooth(EMPTY, EMPTY),
        timezone="UTC",
        start=start,
        latest=start + timedelta(days=2),
        user_id="x",
    )
    assert choice.at == start
    assert "no engagement history" in choice.reason


def test_an_empty_window_sends_at_its_start() -> None:
    start = datetime(2026, 11, 30, 6, 20, tzinfo=UTC)
    choice = choose(model_peaking_at(0, 19), timezone="UTC", start=start, latest=start, user_id="x")
    assert choice.at == start


@pytest.mark.parametrize("user_id", ["ada", "bob", "cy"])
def test_new_york_spring_forward_skips_the_missing_hour(user_id: str) -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:xx does not exist that Sunday. The user's
    # best hour is Sunday 02:00, the next best Sunday 05:00.
    counts = peaked(local_hour(6, 2), weight=50)
    counts[local_hour(6, 5)] = 20
    start = datetime(2026, 3, 8, 5, tzinfo=UTC)  # Sunday 00:00 EST
    choice = choose(
        smooth(counts, EMPTY),
        timezone="America/New_York",
        start=start,
        latest=start + timedelta(hours=12),
        user_id=user_id,
    )
    assert choice.local.hour == 5 and choice.local.utcoffset() == timedelta(hours=-4)
    assert choice.at == datetime(2026, 3, 8, 9, minute_offset(user_id), tzinfo=UTC)


def test_new_york_spring_forward_maps_the_hour_after_the_gap_to_edt() -> None:
    model = model_peaking_at(6, 3)  # Sunday 03:00, the first hour after the gap
    start = datetime(2026, 3, 8, 5, tzinfo=UTC)
    choice = choose(
        model,
        timezone="America/New_York",
        start=start,
        latest=start + timedelta(hours=12),
        user_id="ada",
    )
    assert choice.local.hour == 3 and choice.local.utcoffset() == timedelta(hours=-4)
    assert choice.at == datetime(2026, 3, 8, 7, minute_offset("ada"), tzinfo=UTC)


def test_new_york_fall_back_chooses_the_first_of_the_repeated_hour() -> None:
    # 2026-11-01 01:00-01:59 happens twice (EDT, then EST).
    model = model_peaking_at(6, 1)
    start = datetime(2026, 11, 1, 4, tzinfo=UTC)  # Sunday 00:00 EDT
    choice = choose(
        model,
        timezone="America/New_York",
        start=start,
        latest=start + timedelta(hours=6),
        user_id="ada",
    )
    assert choice.at == datetime(2026, 11, 1, 5, minute_offset("ada"), tzinfo=UTC)  # 01:xx EDT
    assert choice.local.fold == 0


def test_new_york_fall_back_second_occurrence_when_the_first_has_passed() -> None:
    model = model_peaking_at(6, 1)
    start = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 EST, the repeat; the first is gone
    choice = choose(
        model,
        timezone="America/New_York",
        start=start,
        latest=start + timedelta(hours=6),
        user_id="bob",
    )
    assert choice.at == start + timedelta(minutes=minute_offset("bob"))  # 01:xx EST
    assert choice.local.hour == 1 and choice.local.fold == 1


def test_berlin_across_the_march_change() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST; the best hour, Sunday 20:00, is on CEST.
    model = model_peaking_at(6, 20)
    start = datetime(2026, 3, 28, 23, tzinfo=UTC)  # Sunday 00:00 CET
    choice = choose(
        model,
        timezone="Europe/Berlin",
        start=start,
        latest=start + timedelta(hours=24),
        user_id="ada",
    )
    assert choice.local.hour == 20
    assert choice.at == datetime(2026, 3, 29, 18, minute_offset("ada"), tzinfo=UTC)


def test_berlin_in_october_counts_the_repeated_hour_once_per_instant() -> None:
    # 2026-10-25 02:00-02:59 happens twice; both are candidates, the first wins the tie.
    model = model_peaking_at(6, 2)
    start = datetime(2026, 10, 24, 22, tzinfo=UTC)  # Sunday 00:00 CEST
    choice = choose(
        model,
        timezone="Europe/Berlin",
        start=start,
        latest=start + timedelta(hours=8),
        user_id="cy",
    )
    assert choice.at == datetime(2026, 10, 25, 0, minute_offset("cy"), tzinfo=UTC)  # 02:xx CEST


def test_kolkata_half_hour_offset() -> None:
    model = model_peaking_at(0, 20)  # Monday 20:00 IST = 14:30 UTC
    start = datetime(2026, 11, 30, 0, tzinfo=UTC)
    choice = choose(
        model,
        timezone="Asia/Kolkata",
        start=start,
        latest=start + timedelta(hours=24),
        user_id="ada",
    )
    assert choice.at == datetime(2026, 11, 30, 14, 30 + minute_offset("ada"), tzinfo=UTC)
    assert (choice.local.hour, choice.local.minute) == (20, minute_offset("ada"))


def test_chatham_quarter_hour_offset_and_its_dst() -> None:
    # Chatham is +13:45 in the southern summer (until 2026-04-05 03:45) and +12:45 after.
    model = model_peaking_at(0, 9)  # Monday 09:00 local
    summer_start = datetime(2026, 1, 4, 12, tzinfo=UTC)  # Monday 01:45 local
    choice = choose(
        model,
        timezone="Pacific/Chatham",
        start=summer_start,
        latest=summer_start + timedelta(days=1),
        user_id="ada",
    )
    assert choice.at == datetime(2026, 1, 4, 19, 15 + minute_offset("ada"), tzinfo=UTC)
    winter_start = datetime(2026, 6, 7, 12, tzinfo=UTC)  # Monday 00:45 local
    choice = choose(
        model,
        timezone="Pacific/Chatham",
        start=winter_start,
        latest=winter_start + timedelta(days=1),
        user_id="ada",
    )
    assert choice.at == datetime(2026, 6, 7, 20, 15 + minute_offset("ada"), tzinfo=UTC)
    assert choice.local.hour == 9


def test_chatham_skipped_quarter_hours_are_never_chosen() -> None:
    # 2026-09-27 02:45 jumps to 03:45: wall times 02:45-03:44 do not exist.
    zone = ZoneInfo("Pacific/Chatham")
    start = datetime(2026, 9, 26, 12, tzinfo=UTC)
    for user_id in [f"u{i}" for i in range(40)]:
        for at, wall in send_time.candidates(
            timezone="Pacific/Chatham",
            start=start,
            latest=start + timedelta(days=1),
            offset_minutes=minute_offset(user_id),
        ):
            local = at.astimezone(zone)
            assert local.astimezone(UTC) == at
            if at != start:
                assert local.replace(tzinfo=None) == wall + timedelta(
                    minutes=minute_offset(user_id)
                )


# --- the window, at the edge ---------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_window_defaults_to_a_day_from_the_send_time() -> None:
    assert window_end(now=NOW, scheduled_at=None, expires_at=None, within=None, latest=None) == (
        NOW + timedelta(hours=24)
    )
    later = NOW + timedelta(days=2)
    assert window_end(
        now=NOW, scheduled_at=later, expires_at=None, within=timedelta(hours=3), latest=None
    ) == later + timedelta(hours=3)


def test_window_ends_before_the_expiry() -> None:
    expires = NOW + timedelta(hours=5)
    end = window_end(now=NOW, scheduled_at=None, expires_at=expires, within=None, latest=None)
    assert end < expires


@pytest.mark.parametrize(
    ("within", "latest", "field"),
    [
        (timedelta(days=8), None, "optimal_within"),
        (None, NOW - timedelta(hours=1), "optimal_latest"),
        (None, NOW + timedelta(days=7, seconds=1), "optimal_latest"),
    ],
)
def test_window_refuses_bad_bounds(
    within: timedelta | None, latest: datetime | None, field: str
) -> None:
    with pytest.raises(WindowError) as err:
        window_end(now=NOW, scheduled_at=None, expires_at=None, within=within, latest=latest)
    assert err.value.field == field
