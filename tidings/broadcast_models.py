"""The broadcast's vocabulary shared by the domain, the store and the workflow contracts: the
audience, each recipient's status, the counters. No imports from the rest of tidings but models,
so the store can use it without a cycle through `tidings.planning`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from tidings.models import Channel, Identifier, Model

# Ids travel in workflow ids, notification ids (`bc-<id>-<user>`) and URL paths.
BROADCAST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_USER_IDS = 10_000  # larger audiences are segments or every user: ids travel in history


class UserIdsAudience(Model):
    kind: Literal["users"] = "users"
    user_ids: list[Identifier] = Field(min_length=1, max_length=MAX_USER_IDS)


class AllUsersAudience(Model):
    kind: Literal["all"] = "all"


class SegmentAudience(Model):
    kind: Literal["segment"] = "segment"
    segment: Identifier


Audience = Annotated[
    UserIdsAudience | AllUsersAudience | SegmentAudience, Field(discriminator="kind")
]


class UnknownSegment(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no segment {name!r}")
        self.name = name


class RecipientStatus(StrEnum):
    CLAIMED = "claimed"  # about to be sent: a retry finding it re-sends (same Message-ID)
    SENT = "sent"
    DELIVERED = "delivered"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"  # handed to a NotificationWorkflow of its own
    FAILED = "failed"


DONE = frozenset({RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.FAILED})


class ChannelCounters(BaseModel):
    targeted: int = 0
    sent: int = 0
    suppressed: int = 0
    deferred: int = 0
    failed: int = 0

    def add(self, other: ChannelCounters) -> None:
        self.targeted += other.targeted
        self.sent += other.sent
        self.suppressed += other.suppressed
        self.deferred += other.deferred
        self.failed += other.failed


class BroadcastCounters(BaseModel):
    """Recipients (targeted) and, per channel, what happened to each recipient's send."""

    recipients: int = 0
    channels: dict[Channel, ChannelCounters] = Field(default_factory=dict)

    def channel(self, channel: Channel) -> ChannelCounters:
        return self.channels.setdefault(channel, ChannelCounters())

    def total(self) -> ChannelCounters:
        total = ChannelCounters()
        for counters in self.channels.values():
            total.add(counters)
        return total


def notification_id(broadcast_id: str, user_id: str) -> str:
    """One recipient's send, stable on every attempt: the email Message-ID and the inbox item's
    key derive from it, so a re-send in the in-doubt window is the same message."""
    return f"bc-{broadcast_id}-{user_id}"


@dataclass(frozen=True)
class Outcome:
    user_id: str
    status: RecipientStatus
    target: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


# --- an experiment on a share of the audience ----------------------------------------------------

SAMPLE_SALT = "broadcast-sample"


class Phase(StrEnum):
    """Where a broadcast with an experiment is: enrolling its test share, waiting for the
    experiment to decide, then sending the chosen variant to everyone else."""

    TESTING = "testing"
    WAITING = "waiting"
    ROLLOUT = "rollout"


def sample_bucket(broadcast_id: str, user_id: str) -> float:
    """A number in [0, 1), the same in every process: a user is in the test share when it is
    below the share. SHA-256 of broadcast and user (the experiments' `bucket` with its own salt),
    so the sample is independent of user-id order (the first pages would be the oldest or
    alphabetically first users) and of the variant assignment, which hashes with another salt."""
    digest = hashlib.sha256(f"{broadcast_id}\x1f{SAMPLE_SALT}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_sample(broadcast_id: str, user_id: str, share: float) -> bool:
    return sample_bucket(broadcast_id, user_id) < share
