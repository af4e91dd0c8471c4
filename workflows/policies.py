"""Retry policies and timeouts of NotificationWorkflow's activities, named per channel."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from activities.errors import NOT_FOUND, PERMANENT, TEMPLATE
from tidings.models import Channel

_NON_RETRYABLE = [PERMANENT, NOT_FOUND, TEMPLATE]

# Named retry policies per channel. Backoff caps reflect each provider: an SMTP relay that is down
# usually returns within minutes; a customer's webhook endpoint may be down for hours. There is no
# attempt limit: a provider answering 429 with Retry-After: 1 would spend a count of attempts in
# seconds (the fault benchmark showed 9 attempts in a 10 s window). The budget is time instead,
# DELIVERY_DEADLINES below, cut short by the notification's expiry.
RETRY_POLICIES: dict[Channel, RetryPolicy] = {
    Channel.EMAIL: RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
        non_retryable_error_types=_NON_RETRYABLE,
    ),
    Channel.IN_APP: RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(minutes=1),
        non_retryable_error_types=_NON_RETRYABLE,
    ),
    Channel.WEBHOOK: RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=30),
        non_retryable_error_types=_NON_RETRYABLE,
    ),
}
DEFAULT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=_NON_RETRYABLE,
)
# One attempt may take this long before Temporal counts it as timed out and retries. Each stays
# above its provider's client timeout (settings *_timeout_seconds, 10 s by default) so a slow
# provider fails with its own reason, not Temporal's. SMTP (several relays per attempt) and
# customers' webhook endpoints get the longest; push, SMS and Slack APIs answer in well under a
# second; in-app is one database write.
ATTEMPT_TIMEOUTS: dict[Channel, timedelta] = {
    Channel.EMAIL: timedelta(seconds=30),
    Channel.IN_APP: timedelta(seconds=10),
    Channel.WEBHOOK: timedelta(seconds=30),
    Channel.PUSH: timedelta(seconds=25),  # FCM may first exchange its OAuth token: two requests
    Channel.SMS: timedelta(seconds=15),
    Channel.SLACK: timedelta(seconds=15),
}
# The deliver activity heartbeats every second while it sends (activities/heartbeat.py). After a
# worker dies (kill -9, OOM, a lost host) Temporal retries its in-flight sends once this much
# passes without a heartbeat, instead of waiting out the attempt timeouts above. Pass it as
# `heartbeat_timeout=` on every deliver call.
HEARTBEAT_TIMEOUT = timedelta(seconds=5)
# All attempts together, per channel; shortened to the notification's expiry when that comes
# first. A push or SMS hours late is worse than none; a webhook consumer catches up a day later.
DELIVERY_DEADLINES: dict[Channel, timedelta] = {
    Channel.EMAIL: timedelta(hours=6),
    Channel.IN_APP: timedelta(hours=1),
    Channel.WEBHOOK: timedelta(hours=24),
    Channel.PUSH: timedelta(hours=1),
    Channel.SMS: timedelta(hours=2),
    Channel.SLACK: timedelta(hours=2),
}
DEFAULT_DEADLINE = timedelta(hours=2)
LOCAL_TIMEOUT = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=30), non_retryable_error_types=[NOT_FOUND]
)
MAX_ENGAGEMENT_EVENTS = 100
