"""Provider failover: one channel, several providers in order of preference.

A transient failure (or rate limit) at one provider hands the same delivery to the next one at
once, within the same activity attempt. A provider that fails `failures_to_mark_down` times in a
row is marked down for `down_for` and skipped while it is down, so later sends go straight to a
healthy provider; it is tried again when the time is up (or first, if every provider is down).
A permanent error is about the message or the recipient, not the provider, so it is raised as is.

Failing over after a timeout can send twice when the first provider accepted the message without
answering in time: with failover, a channel is at-least-once even where one provider is
effectively-once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tidings.channels.base import (
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    RateLimitedError,
    TransientChannelError,
    close_all,
)
from tidings.models import Channel

log = logging.getLogger(__name__)


@dataclass
class _Health:
    consecutive_failures: int = 0
    down_until: float = 0.0


class FailoverSender:
    def __init__(
        self,
        channel: Channel,
        providers: Sequence[tuple[str, ChannelSender]],
        *,
        failures_to_mark_down: int = 3,
        down_for_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("providers: give at least one")
        self.channel = channel
        self._providers = list(providers)
        self._health = {name: _Health() for name, _ in providers}
        self._threshold = failures_to_mark_down
        self._down_for = down_for_seconds
        self._clock = clock

    def is_down(self, name: str) -> bool:
        return self._health[name].down_until > self._clock()

    def _ordered(self) -> list[tuple[str, ChannelSender]]:
        up = [p for p in self._providers if not self.is_down(p[0])]
        down = [p for p in self._providers if self.is_down(p[0])]
        return up + down  # all down: still try, in order, rather than fail without trying

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        errors: list[tuple[str, TransientChannelError]] = []
        for name, sender in self._ordered():
            try:
                outcome = await sender.send(delivery)
            except PermanentChannelError:
                raise
            except TransientChannelError as e:
                self._failed(name)
                errors.append((name, e))
                log.warning("%s provider %s failed, trying the next: %s", self.channel, name, e)
                continue
            self._health[name] = _Health()
            return outcome
        reasons = "; ".join(f"{name}: {e.reason}" for name, e in errors)
        delays = [e.retry_after for _, e in errors if isinstance(e, RateLimitedError)]
        known = [d for d in delays if d is not None]
        if len(known) == len(errors):
            raise RateLimitedError(f"every provider is rate limited ({reasons})", min(known))
        raise TransientChannelError(f"every provider failed ({reasons})")

    async def aclose(self) -> None:
        await close_all(sender for _, sender in self._providers)

    def _failed(self, name: str) -> None:
        health = self._health[name]
        health.consecutive_failures += 1
        if health.consecutive_failures >= self._threshold:
            health.down_until = self._clock() + self._down_for
            log.warning("%s provider %s marked down for %ss", self.channel, name, self._down_for)
