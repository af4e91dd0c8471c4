"""The client's unsubscribe and delivery-receipt engagement methods (a mixin of `Tidings`)."""

from __future__ import annotations

from datetime import datetime

from tidings import unsubscribe
from tidings.errors import InvalidRequest, NotFound
from tidings.models import ChannelResult, DeliveryStatus, EngagementEvent, EngagementType
from tidings.receipts import DeliveryReceipt
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.unsubscribe import CategoryOff, UnknownCategory


class TrackingMixin:
    settings: Settings
    store: Store

    def unsubscribe_url(self, user_id: str, category: str) -> str | None:
        """The one-click unsubscribe URL of `user_id` for `category` (None without a
        public_base_url), as emails carry it."""
        return unsubscribe.unsubscribe_url(self.settings, user_id, category)

    def read_unsubscribe_token(self, token: str) -> unsubscribe.Unsubscription:
        """Who and what a `/u/` token unsubscribes; InvalidRequest when it is not ours."""
        secret = self.settings.tracking_secret.get_secret_value()
        try:
            return unsubscribe.verify(secret, token)
        except unsubscribe.InvalidUnsubscribeToken as e:
            raise InvalidRequest("token", str(e)) from e

    async def check_unsubscription(self, who: unsubscribe.Unsubscription) -> None:
        """NotFound unless the user exists and some template has the category: what the
        confirmation page checks before offering its button."""
        if await self.store.get_user(who.user_id) is None:
            raise NotFound("user", who.user_id)
        if not await self.store.has_category(who.category):
            raise NotFound("category", who.category)

    async def unsubscribe(self, user_id: str, category: str) -> CategoryOff:
        """Switch every channel of `category` off for `user_id`; idempotent (`changed` is False
        the second time). NotFound for an unknown user or a category no template has."""
        try:
            return await self.store.switch_off_category(user_id, category)
        except UnknownCategory as e:
            raise NotFound("category", category) from e
        except LookupError as e:
            raise NotFound("user", user_id) from e

    async def _record_delivered(
        self, receipt: DeliveryReceipt, applied: ChannelResult, at: datetime
    ) -> None:
        """A receipt that moved a channel to `delivered` is also a `delivered` engagement event
        (once per notification and channel: its dedupe key), written before the run is told
        of the receipt. Not signalled as engagement: the `receipt` signal tells the run."""
        if applied.status is not DeliveryStatus.DELIVERED:
            return
        event = EngagementEvent(
            notification_id=receipt.notification_id,
            type=EngagementType.DELIVERED,
            channel=receipt.channel,
            at=at,
        )
        await self.store.record_engagement(event)
