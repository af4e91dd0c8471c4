"""The push channel: one message to every device the user has registered, FCM or APNs by platform.

Devices are sent to concurrently. A token the provider calls dead is removed from the store and
the other devices still get the message. The send counts as SENT when at least one device
accepted it; otherwise the most hopeful failure wins: rate limited (retry after the longest delay
asked for), then transient, then permanent ("all push tokens are invalid" when every token was
dead).

Delivery guarantee: at-least-once per device. Neither FCM nor APNs de-duplicates sends, and the
send ledger is per notification and channel, written after this returns: a retry after a crash
between "provider accepted" and "ledger written" sends to every device again, where the tag /
collapse id makes the copy replace the first on screen. Once any device accepted and the ledger
entry exists, no retry sends again, so a device that failed transiently during a partly
successful send is not retried (its failure is logged).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tidings.channels.base import (
    ChannelError,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.push_common import InvalidTokenError, PushClient, mask_token
from tidings.models import Channel, DeliveryStatus, Device, Platform
from tidings.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceResult:
    device: Device
    message_id: str | None = None
    error: ChannelError | None = None


class PushSender:
    channel: Channel = Channel.PUSH

    def __init__(
        self, store: Store, *, fcm: PushClient | None = None, apns: PushClient | None = None
    ) -> None:
        if fcm is None and apns is None:
            raise ValueError("PushSender needs at least one of FCM and APNs configured")
        self._store = store
        self._clients: dict[Platform, PushClient] = {}
        if fcm is not None:
            self._clients[Platform.FCM] = fcm
        if apns is not None:
            self._clients[Platform.APNS] = apns

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        if not delivery.devices:
            raise PermanentChannelError(f"user {delivery.user.id} has no registered push device")
        results = await asyncio.gather(*(self._one(delivery, d) for d in delivery.devices))
        accepted = [r for r in results if r.error is None]
        failed = [r for r in results if r.error is not None]
        for r in failed:
            logger.warning(
                "push to %s device %s failed notification=%s: %s",
                r.device.platform.value,
                mask_token(r.device.token),
                delivery.notification_id,
                r.error.reason if r.error else "",
            )
        if accepted:
            logger.info(
                "push sent notification=%s devices=%d/%d",
                delivery.notification_id,
                len(accepted),
                len(results),
            )
            return ProviderAcceptance(
                status=DeliveryStatus.SENT,
                target=", ".join(mask_token(r.device.token) for r in accepted),
                provider_message_id=" ".join(r.message_id for r in accepted if r.message_id),
            )
        raise self._aggregate(failed)

    @staticmethod
    def _aggregate(failed: list[DeviceResult]) -> ChannelError:
        errors = [r.error for r in failed if r.error is not None]
        dead = sum(isinstance(e, InvalidTokenError) for e in errors)
        if dead == len(errors):
            return PermanentChannelError(f"all push tokens are invalid (removed {dead})")
        reasons = "; ".join(
            f"{mask_token(r.device.token)}: {r.error.reason}" for r in failed if r.error
        )
        limited = [e for e in errors if isinstance(e, RateLimitedError)]
        if limited:
            delays = [e.retry_after for e in limited if e.retry_after is not None]
            return RateLimitedError(f"push rate limited: {reasons}", max(delays, default=None))
        if any(isinstance(e, TransientChannelError) for e in errors):
            return TransientChannelError(f"push failed on every device: {reasons}")
        return PermanentChannelError(f"push failed on every device: {reasons}")

    async def _one(self, delivery: OutgoingMessage, device: Device) -> DeviceResult:
        client = self._clients.get(device.platform)
        if client is None:
            return DeviceResult(
                device,
                error=PermanentChannelError(f"no {device.platform.value} credentials configured"),
            )
        try:
            return DeviceResult(device, message_id=await client.send_to(delivery, device.token))
        except InvalidTokenError as e:
            await self._remove(device)
            return DeviceResult(device, error=e)
        except ChannelError as e:
            return DeviceResult(device, error=e)

    async def _remove(self, device: Device) -> None:
        try:
            removed = await self._store.remove_device(device.platform, device.token)
        except SQLAlchemyError as e:
            # The next send to this token fails the same way and tries again.
            logger.warning("could not remove dead push token %s: %s", mask_token(device.token), e)
            return
        logger.info(
            "removed dead %s push token %s of user %s (was stored: %s)",
            device.platform.value,
            mask_token(device.token),
            device.user_id,
            removed,
        )

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
