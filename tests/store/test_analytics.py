"""Analytics checked against counts made by hand (plain Python over the same generated rows) on
SQLite and PostgreSQL: a period with notifications and events before and after it, repeated
events, late events, events without a channel and on notifications never sent."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.analytics_data import START, chunks, load
from tidings.analytics import Bucket, Counts, MetricsFilter, Period, RankBy
from tidings.models import Channel
from tidings.segments import SegmentDefinition
from tidings.store import Store

SCALE = 0.0006  # 60 users, 600 notifications, about 1,800 events
PERIOD = Period(start=START + timedelta(days=8), end=START + timedelta(days=20))
OK = ("sent", "delivered")
ENGAGED = ("opened", "clicked", "converted")

Row = dict[str, Any]


@dataclass
class Data:
    notifications: list[Row]
    deliveries: dict[str, list[Row]]
    events: dict[str, list[Row]]
    users: dict[str, Row]
    templates: dict[tuple[str, int], Row]


def _data() -> Data:
    tables: dict[str, list[Row]] = defaultdict(list)
    for table, rows in chunks(SCALE):
        tables[table].extend(rows)
    deliveries: dict[str, list[Row]] = defaultdict(list)
    for d in tables["deliveries"]:
        deliveries[d["notification_id"]].append(d)
    events: dict[str, list[Row]] = defaultdict(list)
    for e in tables["engagement_events"]:
        events[e["notification_id"]].append(e)
    return Data(
        notifications=tables["notifications"],
        deliveries=deliveries,
        events=events,
        users={u["id"]: u for u in tables["users"]},
        templates={(t["id"], t["version"]): t for t in tables["templates"]},
    )


DATA = _data()


def _in_period(n: Row) -> bool:
    return bool(PERIOD.start <= n["created_at"] < PERIOD.end)


def _cohort(keep: Callable[[Row], bool], channel: str | None = None) -> list[Row]:
    rows = [n for n in DATA.notifications if _in_period(n) and keep(n)]
    if channel is not None:
        rows = [n for n in rows if any(d["channel"] == channel for d in DATA.deliveries[n["id"]])]
    return rows


def _by_hand(rows: list[Row], channel: str | None = None) -> Counts:
    c = Counts()
    for n in rows:
        c.notifications += 1
        ds = [d for d in DATA.deliveries[n["id"]] if channel is None or d["channel"] == channel]
        statuses = {d["status"] for d in ds}
        ok = bool(statuses & set(OK))
        c.sent += ok
        c.delivered += "delivered" in statuses
        c.failed += "failed" in statuses and not ok
        c.suppressed += "suppressed" in statuses and not ok and "failed" not in statuses
        if not ok:
            continue
        types = {
            e["type"]
            for e in DATA.events[n["id"]]
            if channel is None or e["channel"] in (channel, None)
        }
        c.opened += bool(types & {"opened", "clicked"})
        c.clicked += "clicked" in types
        c.converted += "converted" in types
    return c


@pytest.fixture
async def loaded(store: Store) -> Store:
    await load(store.engine, SCALE)
    return store


def test_the_data_set_has_what_the_counts_must_survive() -> None:
    before = [n for n in DATA.notifications if n["created_at"] < PERIOD.start]
    after = [n for n in DATA.notifications if n["created_at"] >= PERIOD.end]
    inside = _cohort(lambda n: True)
    assert before and after and inside
    late = [e for n in inside for e in DATA.events[n["id"]] if e["at"] >= PERIOD.end]
    repeats = [
        n for n in inside if len([e for e in DATA.events[n["id"]] if e["type"] == "opened"]) > 1
    ]
    no_channel = [e for n in inside for e in DATA.events[n["id"]] if e["channel"] is None]
    unsent = [
        n
        for n in inside
        if DATA.events[n["id"]] and not any(d["status"] in OK for d in DATA.deliveries[n["id"]])
    ]
    assert late and repeats and no_channel and unsent


FILTERS: list[tuple[MetricsFilter, Callable[[Row], bool]]] = [
    (MetricsFilter(), lambda n: True),
    (MetricsFilter(template_id="t04"), lambda n: n["template_id"] == "t04"),
    (
        MetricsFilter(template_id="t04", template_version=2),
        lambda n: n["template_id"] == "t04" and n["template_version"] == 2,
    ),
    (
        MetricsFilter(category="marketing"),
        lambda n: (
            DATA.templates[(n["template_id"], n["template_version"])]["category"] == "marketing"
        ),
    ),
    (
        MetricsFilter(experiment_id="exp1", variant="b"),
        lambda n: n["experiment_id"] == "exp1" and n["variant"] == "b",
    ),
    (MetricsFilter(user_id="u0000007"), lambda n: n["user_id"] == "u0000007"),
]


@pytest.mark.parametrize("case", range(len(FILTERS)))
async def test_metrics_match_a_count_by_hand(loaded: Store, case: int) -> None:
    f, keep = FILTERS[case]
    expected = _by_hand(_cohort(keep))
    metrics = await loaded.analytics_metrics(PERIOD, f)
    assert metrics.counts == expected
    assert metrics.rates["open_rate"] == pytest.approx(expected.opened / expected.sent)


@pytest.mark.parametrize("channel", ["email", "sms"])
async def test_a_channel_filter_counts_that_channel_and_events_of_it_or_of_none(
    loaded: Store, channel: str
) -> None:
    expected = _by_hand(_cohort(lambda n: True, channel), channel)
    metrics = await loaded.analytics_metrics(PERIOD, MetricsFilter(channel=Channel(channel)))
    assert metrics.counts == expected


async def test_a_segment_filter_counts_its_users_notifications(loaded: Store) -> None:
    pro = await _pro(loaded)
    expected = _by_hand(_cohort(lambda n: n["user_id"] in pro))
    metrics = await loaded.analytics_metrics(PERIOD, MetricsFilter(segment="pro"))
    assert metrics.counts == expected and expected.notifications > 0


async def test_a_channel_with_other_filters_joins_the_notification(loaded: Store) -> None:
    """With a channel the cohort is the channel's deliveries by their own creation time; the
    other filters still apply, and best templates still group by the notification's."""
    pro = await _pro(loaded)
    with_segment = MetricsFilter(channel=Channel.EMAIL, segment="pro")
    expected = _by_hand(_cohort(lambda n: n["user_id"] in pro, "email"), "email")
    assert (await loaded.analytics_metrics(PERIOD, with_segment)).counts == expected
    t04 = MetricsFilter(channel=Channel.SMS, template_id="t04")
    expected = _by_hand(_cohort(lambda n: n["template_id"] == "t04", "sms"), "sms")
    assert (await loaded.analytics_metrics(PERIOD, t04)).counts == expected
    ranked = await loaded.best_templates(
        PERIOD, MetricsFilter(channel=Channel.PUSH), minimum_sample=1, limit=50
    )
    assert ranked
    for rank in ranked:

        def of_template(n: Row, template: str = rank.template_id) -> bool:
            return bool(n["template_id"] == template)

        assert rank.counts == _by_hand(_cohort(of_template, "push"), "push")


async def test_the_daily_and_hourly_series_add_up_by_creation_time(loaded: Store) -> None:
    metrics = await loaded.analytics_metrics(PERIOD, MetricsFilter(), Bucket.DAY)
    assert len(metrics.series) == 12
    for point in metrics.series:
        day_end = point.at + timedelta(days=1)
        rows = [n for n in _cohort(lambda n: True) if point.at <= n["created_at"] < day_end]
        assert point.counts == _by_hand(rows)
    hourly = await loaded.analytics_metrics(PERIOD, MetricsFilter(), Bucket.HOUR)
    assert sum(p.counts.sent for p in hourly.series) == metrics.counts.sent
    assert all(p.at.minute == 0 and p.at.tzinfo is not None for p in hourly.series)


@pytest.mark.parametrize(
    ("segment", "channel"), [(False, None), (True, None), (False, "email"), (True, "email")]
)
async def test_conversion_value_is_summed_per_currency(
    loaded: Store, segment: bool, channel: str | None
) -> None:
    """Every `converted` event's value (late ones and those through no channel included) of
    the cohort's notifications, per currency; with a segment the series and the values come
    from one statement, and still equal a recount."""
    pro = await _pro(loaded) if segment else None
    rows = _cohort(lambda n: pro is None or n["user_id"] in pro, channel)
    expected: dict[str, float] = defaultdict(float)
    for n in rows:
        for e in DATA.events[n["id"]]:
            if channel is not None and e["channel"] not in (channel, None):
                continue
            if e["type"] == "converted" and "value" in e["metadata"]:
                expected[e["metadata"]["currency"]] += e["metadata"]["value"]
    f = MetricsFilter(segment="pro" if segment else None, channel=channel)
    metrics = await loaded.analytics_metrics(PERIOD, f)
    assert expected and set(metrics.conversion_value) == set(expected)
    for currency, value in expected.items():
        assert metrics.conversion_value[currency] == pytest.approx(value)
    assert metrics.counts == _by_hand(rows, channel)
    for point in metrics.series:
        day_end = point.at + timedelta(days=1)
        assert point.counts == _by_hand(
            [n for n in rows if point.at <= n["created_at"] < day_end], channel
        )


async def test_best_templates_rank_by_the_metric_among_those_with_the_sample(loaded: Store) -> None:
    by_template: dict[str, list[Row]] = defaultdict(list)
    for n in _cohort(lambda n: True):
        by_template[n["template_id"]].append(n)
    counts = {t: _by_hand(rows) for t, rows in by_template.items()}
    minimum = 12
    eligible = [t for t, c in counts.items() if c.sent >= minimum]
    expected = sorted(
        eligible, key=lambda t: (-(counts[t].clicked / counts[t].sent), -counts[t].sent, t)
    )
    ranks = await loaded.best_templates(
        PERIOD, MetricsFilter(), by=RankBy.CLICK_RATE, minimum_sample=minimum, limit=5
    )
    assert [r.template_id for r in ranks] == expected[:5]
    assert all(r.counts == counts[r.template_id] for r in ranks)
    assert 5 <= len(eligible) < len(counts)  # the minimum sample left some out


async def _pro(store: Store) -> set[str]:
    """The users of a segment "pro" (created on `store` unless there)."""
    await store.create_segment(
        SegmentDefinition(
            name="pro", rules={"field": "attributes.plan", "op": "eq", "value": "pro"}
        )
    )
    return {u for u, row in DATA.users.items() if row["attributes"]["plan"] == "pro"}


# Filters for the per-channel figures, which read the deliveries' own copy of the creation
# time and join the notification only for a filter: (filter, which notifications, channels).
CHANNEL_FILTERS: list[tuple[MetricsFilter, Callable[[Row, set[str]], bool], list[str]]] = [
    (MetricsFilter(), lambda n, pro: True, ["email", "push", "sms"]),
    (
        MetricsFilter(template_id="t04"),
        lambda n, pro: n["template_id"] == "t04",
        ["email", "push", "sms"],
    ),
    (MetricsFilter(channel=Channel.SMS), lambda n, pro: True, ["sms"]),
    (
        MetricsFilter(channel=Channel.EMAIL, segment="pro"),
        lambda n, pro: n["user_id"] in pro,
        ["email"],
    ),
]


@pytest.mark.parametrize("case", range(len(CHANNEL_FILTERS)))
async def test_channel_performance_and_the_median_time_to_open(loaded: Store, case: int) -> None:
    f, keep, channels = CHANNEL_FILTERS[case]
    pro = await _pro(loaded)
    performance = {p.channel.value: p for p in await loaded.channel_performance(PERIOD, f)}
    assert sorted(performance) == channels
    for channel in channels:
        attempted = sent = opened = 0
        waits = []
        for n in _cohort(lambda n: keep(n, pro)):
            for d in DATA.deliveries[n["id"]]:
                if d["channel"] != channel or d["status"] == "suppressed":
                    continue
                attempted += 1
                if d["status"] not in OK:
                    continue
                sent += 1
                opens = [
                    e["at"]
                    for e in DATA.events[n["id"]]
                    if e["type"] in ("opened", "clicked") and e["channel"] in (channel, None)
                ]
                if opens:
                    opened += 1
                    # Fractions of a second kept; an open before the delivery's time left out.
                    if min(opens) >= d["at"]:
                        waits.append((min(opens) - d["at"]).total_seconds())
        p = performance[channel]
        assert (p.attempted, p.sent, p.opened) == (attempted, sent, opened)
        assert p.median_seconds_to_open == pytest.approx(statistics.median(waits))


@pytest.mark.parametrize("case", range(len(CHANNEL_FILTERS)))
async def test_provider_performance_counts_failures_retries_and_failovers(
    loaded: Store, case: int
) -> None:
    f, keep, channels = CHANNEL_FILTERS[case]
    pro = await _pro(loaded)
    performance = {p.channel.value: p for p in await loaded.provider_performance(PERIOD, f)}
    assert sorted(performance) == channels
    for channel in channels:
        deliveries = failed = retries = away = to = 0
        for n in _cohort(lambda n: keep(n, pro)):
            ds = DATA.deliveries[n["id"]]
            any_ok = any(d["status"] in OK for d in ds)
            any_failed = any(d["status"] == "failed" for d in ds)
            for d in ds:
                if d["channel"] != channel:
                    continue
                deliveries += d["status"] != "suppressed"
                failed += d["status"] == "failed"
                retries += max(d["attempts"] - 1, 0)
                away += d["status"] == "failed" and any_ok
                to += d["status"] in OK and any_failed
        p = performance[channel]
        assert (p.deliveries, p.failed, p.retries, p.failovers_from, p.failovers_to) == (
            deliveries,
            failed,
            retries,
            away,
            to,
        )


async def test_a_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        Period(start=START, end=START)
    with pytest.raises(ValueError, match="at most 400 days"):
        Period(start=START, end=datetime(2030, 1, 1, tzinfo=UTC))
