"""A channel sender that records what it is handed and answers from a script, for the tests of the
send protocol (tests/unit/test_delivery.py) and of the deliver activity (tests/activities/)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tidings.channels.base import OutgoingMessage, ProviderAcceptance
from tidings.models import Channel, DeliveryStatus

ACCEPTED = ProviderAcceptance(status=DeliveryStatus.SENT, target="a***@example.com")


@dataclass
class RecordingSender:
    channel: Channel = Channel.EMAIL
    # Answers in order, one per send: an exception is raised, an acceptance returned. When the
    # script runs out, every send is accepted.
    script: list[BaseException | ProviderAcceptance] = field(default_factory=list)
    delay: float = 0.0  # seconds each send takes, for heartbeat tests
    sent: list[OutgoingMessage] = field(default_factory=list)

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        self.sent.append(delivery)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.script.pop(0) if self.script else ACCEPTED
        if isinstance(answer, BaseException):
            raise answer
        return answer
