"""Timeouts of the deliver activity: a dead worker is noticed within the heartbeat timeout, and
every attempt timeout leaves room for the provider's own client timeout to answer first."""

from __future__ import annotations

from datetime import timedelta

from activities.heartbeat import DEFAULT_EVERY
from tidings.models import Channel
from tidings.settings import Settings
from workflows.policies import ATTEMPT_TIMEOUTS, HEARTBEAT_TIMEOUT


def test_a_dead_worker_is_noticed_within_about_ten_seconds() -> None:
    assert timedelta(seconds=10) >= HEARTBEAT_TIMEOUT
    # Several beats fit in one timeout, so one late beat on a busy worker is not a false alarm.
    assert timedelta(seconds=4 * DEFAULT_EVERY) <= HEARTBEAT_TIMEOUT


def test_every_channel_has_an_attempt_timeout_above_its_providers_client_timeout() -> None:
    settings = Settings(_env_file=None, environment="test")
    client_timeouts = {
        Channel.EMAIL: settings.smtp_timeout_seconds,
        Channel.WEBHOOK: settings.webhook_timeout_seconds,
        Channel.PUSH: max(settings.fcm_timeout_seconds, settings.apns_timeout_seconds),
        Channel.SMS: settings.twilio_timeout_seconds,
        Channel.SLACK: settings.slack_timeout_seconds,
    }
    assert set(ATTEMPT_TIMEOUTS) == set(Channel)
    for channel, seconds in client_timeouts.items():
        assert ATTEMPT_TIMEOUTS[channel] > timedelta(seconds=seconds), channel
    # Providers that answer fast no longer hold a dead attempt for the old 30 s default.
    for channel in (Channel.PUSH, Channel.SMS, Channel.SLACK, Channel.IN_APP):
        assert ATTEMPT_TIMEOUTS[channel] < timedelta(seconds=30), channel
