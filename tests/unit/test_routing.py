"""Routing policy: channel choice, send time and the overall status of a notification.

Quiet-hours arithmetic across DST lives in test_quiet_hours.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.routing import RoutingDecision, choose_channels, overall_status, send_time, status_of

TEMPLATE = TemplateDefinition(
    id="digest",
    category="marketing",
    channels=[Channel.EMAIL, Channel.PUSH, Channel.IN_APP],
    content=TemplateContent(subject="s", text="t"),
)
FULL_USER = User(
    id="u1",
    email="u1@example.com",
    phone="+14155550100",
    webhook_url="https://hooks.example.com/u1",
    slack_user_id="U123",
)
ALL = TEMPLATE.model_copy(update={"channels": list(Channel)})


def choose(
    *,
    template: TemplateDefinition = TEMPLATE,
    user: User = FULL_USER,
    prefs: Preferences | None = None,
    priority: Priority = Priority.MEDIUM,
    requested: list[Channel] | None = None,
    has_devices: bool = True,
) -> RoutingDecision:
    return choose_channels(
        template=template,
        user=user,
        preferences=prefs or Preferences(user_id=user.id),
        priority=priority,
        requested=requested,
        has_devices=has_devices,
    )


def test_defaults_to_template_channels_in_order() -> None:
    decision = choose()
    assert decision.channels == [Channel.EMAIL, Channel.PUSH, Channel.IN_APP]
    assert decision.suppressed == {}


def test_requested_channels_replace_template_channels() -> None:
    decision = choose(requested=[Channel.IN_APP, Channel.EMAIL, Channel.IN_APP])
    assert decision.channels == [Channel.IN_APP, Channel.EMAIL]


def test_requested_channel_the_template_does_not_support() -> None:
    decision = choose(requested=[Channel.SMS, Channel.EMAIL])
    assert decision.channels == [Channel.EMAIL]
    assert decision.suppressed == {Channel.SMS: "template digest does not support sms"}


def test_unsupported_channel_stays_suppressed_for_critical() -> None:
    decision = choose(requested=[Channel.SMS], priority=Priority.CRITICAL)
    assert decision.channels == []
    assert Channel.SMS in decision.suppressed


@pytest.mark.parametrize(
    ("channel", "user", "has_devices", "reason"),
    [
        (Channel.EMAIL, User(id="u"), True, "user has no email address"),
        (Channel.SMS, User(id="u"), True, "user has no phone number"),
        (Channel.PUSH, FULL_USER, False, "user has no registered device"),
        (Channel.WEBHOOK, User(id="u"), True, "user has no webhook URL"),
        (Channel.SLACK, User(id="u"), True, "user has no Slack webhook URL or Slack user id"),
        (
            Channel.SLACK,
            # Addresses kept in free-form attributes do not count: only the typed fields do.
            User(id="u", attributes={"slack_user_id": "U123", "slack_webhook_url": "https://x"}),
            True,
            "user has no Slack webhook URL or Slack user id",
        ),
    ],
)
def test_missing_address_suppresses(
    channel: Channel, user: User, has_devices: bool, reason: str
) -> None:
    decision = choose(
        template=ALL,
        user=user,
        requested=[channel],
        has_devices=has_devices,
        priority=Priority.CRITICAL,  # critical never conjures an address
    )
    assert decision.channels == []
    assert decision.suppressed == {channel: reason}


def test_every_address_present_reaches_every_channel() -> None:
    assert choose(template=ALL).channels == list(Channel)
    webhook_only = User(id="u", slack_webhook_url="https://hooks.slack.com/x")
    assert choose(template=ALL, user=webhook_only, has_devices=False).channels == [
        Channel.IN_APP,  # in-app needs no address
        Channel.SLACK,
    ]
    further_endpoints_only = User(id="u", webhook_urls=["https://hooks.example.com/a"])
    assert (
        Channel.WEBHOOK
        in choose(template=ALL, user=further_endpoints_only, has_devices=False).channels
    )


def test_global_opt_out() -> None:
    prefs = Preferences(user_id="u1", channels={Channel.EMAIL: False})
    decision = choose(prefs=prefs)
    assert decision.channels == [Channel.PUSH, Channel.IN_APP]
    assert decision.suppressed == {Channel.EMAIL: "opted out of email (all notifications)"}


def test_category_beats_global() -> None:
    prefs = Preferences(
        user_id="u1",
        channels={Channel.EMAIL: False, Channel.PUSH: True},
        categories={"marketing": {Channel.EMAIL: True, Channel.PUSH: False}},
    )
    decision = choose(prefs=prefs)
    assert decision.channels == [Channel.EMAIL, Channel.IN_APP]
    assert decision.suppressed == {Channel.PUSH: "opted out of push (category marketing)"}


def test_template_beats_category_and_global() -> None:
    prefs = Preferences(
        user_id="u1",
        channels={Channel.EMAIL: False, Channel.IN_APP: False},
        categories={"marketing": {Channel.EMAIL: False, Channel.PUSH: True}},
        templates={"digest": {Channel.EMAIL: True, Channel.PUSH: False}},
    )
    decision = choose(prefs=prefs)
    assert decision.channels == [Channel.EMAIL]
    assert decision.suppressed == {
        Channel.PUSH: "opted out of push (template digest)",
        Channel.IN_APP: "opted out of in_app (all notifications)",
    }


def test_switches_for_other_templates_and_categories_do_not_apply() -> None:
    prefs = Preferences(
        user_id="u1",
        categories={"billing": {Channel.EMAIL: False}},
        templates={"other": {Channel.PUSH: False}},
    )
    assert choose(prefs=prefs).channels == [Channel.EMAIL, Channel.PUSH, Channel.IN_APP]


def test_explicit_request_still_honours_opt_out() -> None:
    prefs = Preferences(user_id="u1", channels={Channel.EMAIL: False})
    decision = choose(prefs=prefs, requested=[Channel.EMAIL], priority=Priority.HIGH)
    assert decision.channels == []
    assert decision.suppressed == {Channel.EMAIL: "opted out of email (all notifications)"}


def test_critical_bypasses_opt_outs_at_every_level() -> None:
    prefs = Preferences(
        user_id="u1",
        channels={Channel.EMAIL: False},
        categories={"marketing": {Channel.PUSH: False}},
        templates={"digest": {Channel.IN_APP: False}},
    )
    decision = choose(prefs=prefs, priority=Priority.CRITICAL)
    assert decision.channels == [Channel.EMAIL, Channel.PUSH, Channel.IN_APP]
    assert decision.suppressed == {}


def test_empty_request_chooses_nothing() -> None:
    assert choose(requested=[]) == RoutingDecision(channels=[], suppressed={})


# --- send_time ----------------------------------------------------------------------------------

NIGHT = QuietHours(start=time(22), end=time(7))
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def test_send_time_is_now_without_schedule_or_quiet_hours() -> None:
    got = send_time(
        now=NOW, scheduled_at=None, timezone="UTC", quiet_hours=None, priority=Priority.LOW
    )
    assert got == NOW


def test_scheduled_in_the_past_sends_now() -> None:
    got = send_time(
        now=NOW,
        scheduled_at=NOW - timedelta(days=2),
        timezone="UTC",
        quiet_hours=NIGHT,
        priority=Priority.LOW,
    )
    assert got == NOW


def test_scheduled_in_the_future_is_kept_and_returned_in_utc() -> None:
    later = datetime(2024, 6, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))  # 14:00Z
    got = send_time(
        now=NOW, scheduled_at=later, timezone="UTC", quiet_hours=NIGHT, priority=Priority.MEDIUM
    )
    assert got == datetime(2024, 6, 1, 14, 0, tzinfo=UTC)
    assert got.tzinfo is UTC


def test_schedule_inside_quiet_hours_is_deferred_not_dropped() -> None:
    # 23:00 in Berlin (CEST, +2) is 21:00Z; quiet hours end at 07:00 Berlin = 05:00Z.
    got = send_time(
        now=NOW,
        scheduled_at=datetime(2024, 6, 1, 21, 0, tzinfo=UTC),
        timezone="Europe/Berlin",
        quiet_hours=NIGHT,
        priority=Priority.HIGH,
    )
    assert got == datetime(2024, 6, 2, 5, 0, tzinfo=UTC)


def test_now_inside_quiet_hours_is_deferred() -> None:
    now = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)  # 23:00 EDT on May 31
    got = send_time(
        now=now,
        scheduled_at=None,
        timezone="America/New_York",
        quiet_hours=NIGHT,
        priority=Priority.LOW,
    )
    assert got == datetime(2024, 6, 1, 11, 0, tzinfo=UTC)  # 07:00 EDT


def test_critical_ignores_quiet_hours() -> None:
    now = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
    got = send_time(
        now=now,
        scheduled_at=None,
        timezone="America/New_York",
        quiet_hours=NIGHT,
        priority=Priority.CRITICAL,
    )
    assert got == now


def test_send_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="now"):
        send_time(
            now=datetime(2024, 1, 1),
            scheduled_at=None,
            timezone="UTC",
            quiet_hours=None,
            priority=Priority.LOW,
        )
    with pytest.raises(ValueError, match="scheduled_at"):
        send_time(
            now=NOW,
            scheduled_at=datetime(2024, 1, 1),
            timezone="UTC",
            quiet_hours=None,
            priority=Priority.LOW,
        )


# --- overall_status -----------------------------------------------------------------------------


def results(*statuses: DeliveryStatus) -> list[ChannelResult]:
    channels = list(Channel)
    return [ChannelResult(channel=channels[i], status=s) for i, s in enumerate(statuses)]


S = DeliveryStatus


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((), NotificationStatus.SUPPRESSED),
        ((S.SUPPRESSED, S.SUPPRESSED), NotificationStatus.SUPPRESSED),
        ((S.SENT,), NotificationStatus.SENT),
        ((S.DELIVERED, S.FAILED), NotificationStatus.SENT),
        ((S.FAILED, S.SENT, S.SUPPRESSED), NotificationStatus.SENT),
        ((S.FAILED, S.SUPPRESSED), NotificationStatus.FAILED),
        ((S.FAILED, S.EXPIRED), NotificationStatus.FAILED),
        ((S.FAILED,), NotificationStatus.FAILED),
        ((S.EXPIRED, S.EXPIRED), NotificationStatus.EXPIRED),
        ((S.CANCELLED,), NotificationStatus.CANCELLED),
        ((S.CANCELLED, S.EXPIRED), NotificationStatus.CANCELLED),
        ((S.EXPIRED, S.SUPPRESSED), NotificationStatus.SUPPRESSED),
        ((S.SCHEDULED, S.FAILED), NotificationStatus.SENDING),
        ((S.SCHEDULED, S.SENT), NotificationStatus.SENT),
    ],
)
def test_overall_status(statuses: tuple[DeliveryStatus, ...], expected: NotificationStatus) -> None:
    assert overall_status(results(*statuses)) is expected


def test_overall_status_rules_say_what_its_docstring_says() -> None:
    """`STATUS_RULES` (which the store also builds into SQL) against the rule as written."""

    def as_written(statuses: set[DeliveryStatus]) -> NotificationStatus:
        if statuses & {DeliveryStatus.SENT, DeliveryStatus.DELIVERED}:
            return NotificationStatus.SENT
        if statuses & {DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING}:
            return NotificationStatus.SENDING
        if DeliveryStatus.FAILED in statuses:
            return NotificationStatus.FAILED
        if statuses and statuses <= {DeliveryStatus.EXPIRED, DeliveryStatus.CANCELLED}:
            if DeliveryStatus.CANCELLED in statuses:
                return NotificationStatus.CANCELLED
            return NotificationStatus.EXPIRED
        return NotificationStatus.SUPPRESSED

    every = list(DeliveryStatus)
    for mask in range(2 ** len(every)):
        statuses = {s for i, s in enumerate(every) if mask >> i & 1}
        assert status_of(statuses) is as_written(statuses), statuses
