"""The enumerations the domain models share: channels, priorities, push platforms, delivery and
notification statuses, engagement types."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"
    IN_APP = "in_app"
    WEBHOOK = "webhook"
    SLACK = "slack"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]

    @property
    def urgent(self) -> bool:
        """HIGH and CRITICAL run on their own task queues so a LOW backlog cannot delay them."""
        return self in (Priority.HIGH, Priority.CRITICAL)


_PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class Platform(StrEnum):
    FCM = "fcm"
    APNS = "apns"


class DeliveryStatus(StrEnum):
    """Status of one channel of one notification."""

    SCHEDULED = "scheduled"
    SENDING = "sending"  # handed to the channel's activity; its result has not landed yet
    SENT = "sent"  # accepted by the provider (SMTP relay, push service)
    DELIVERED = "delivered"  # reached the user's endpoint (inbox row, webhook 2xx, receipt)
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)


class NotificationStatus(StrEnum):
    """Status of a whole notification, derived from its channels."""

    SCHEDULED = "scheduled"  # waiting for its send time (scheduled time or quiet hours)
    SENDING = "sending"
    SENT = "sent"  # at least one channel sent or delivered
    FAILED = "failed"  # every attempted channel failed
    SUPPRESSED = "suppressed"  # nothing to send: every channel suppressed by policy
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class EngagementType(StrEnum):
    # Recorded from a provider's delivery receipt (and accepted from apps), never signalled to
    # a run: runs learn of delivery through the `receipt` signal, and workers older than this
    # value could not decode it.
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    DISMISSED = "dismissed"
    CONVERTED = "converted"
