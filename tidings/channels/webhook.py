"""Signed webhooks (Standard Webhooks: https://www.standardwebhooks.com/).

Every request carries `webhook-id` (the delivery's idempotency key, the same on every retry, so
receivers can drop duplicates), `webhook-timestamp` and `webhook-signature`. `sign` and `verify`
are public: tests and the receipts endpoint check signatures with the same code that makes them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from tidings import targets
from tidings.channels.base import (
    ChannelError,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.pinned import pin
from tidings.models import Channel, DeliveryStatus
from tidings.settings import Settings

logger = logging.getLogger(__name__)

USER_AGENT = "Tidings-Webhooks/0.1"


def _secret_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as e:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from e


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook; raises ValueError naming what is wrong."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_ts = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not raw_ts or not signatures:
        raise ValueError("webhook-id, webhook-timestamp and webhook-signature are all required")
    try:
        timestamp = int(raw_ts)
    except ValueError as e:
        raise ValueError(f"webhook-timestamp {raw_ts!r} is not unix seconds") from e
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise ValueError(
            f"webhook-timestamp is {int(current - timestamp)}s from now; "
            f"the tolerance is {tolerance_seconds}s"
        )
    expected = sign(secret, msg_id, timestamp, body).encode()
    # The header may list several space-separated signatures (during secret rotation).
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise ValueError("webhook-signature does not match the body")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _display_target(url: httpx.URL) -> str:
    # No query string or credentials: they often carry tokens.
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


class WebhookSender:
    channel = Channel.WEBHOOK

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        resolver: targets.Resolver = targets.system_resolver,
    ) -> None:
        self._settings = settings
        self._http = http
        self._policy = settings.webhook_target_policy
        self._resolver = resolver
        self._secret = settings.webhook_secret.get_secret_value()
        _secret_key(self._secret)  # refuse a malformed secret at start-up, not at first send

    def payload(self, delivery: OutgoingMessage, now: datetime) -> bytes:
        return json.dumps(
            {
                "type": "notification",
                "notification_id": delivery.notification_id,
                "user_id": delivery.user.id,
                "channel": self.channel.value,
                "subject": delivery.message.subject,
                "text": delivery.message.text,
                "timestamp": now.isoformat(),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        """Every one of the user's endpoints gets the message, concurrently, with the same
        webhook-id. One endpoint failing transiently retries the whole send (endpoints that
        already have it get it again, deduplicable by webhook-id); one refusing for good is
        reported in the target while the others keep theirs."""
        urls = list(dict.fromkeys(str(u) for u in delivery.user.webhook_endpoints))
        if not urls:
            raise PermanentChannelError(f"user {delivery.user.id} has no webhook_url")
        if len(urls) == 1:
            return await self._send_one(delivery, urls[0])
        results = await asyncio.gather(
            *(self._send_one(delivery, u) for u in urls), return_exceptions=True
        )
        delivered = [r for r in results if isinstance(r, ProviderAcceptance)]
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, PermanentChannelError | TransientChannelError):
                raise error
        transient = [e for e in errors if isinstance(e, TransientChannelError)]
        if transient:
            reasons = "; ".join(e.reason for e in transient)
            delays = [e.retry_after for e in transient if isinstance(e, RateLimitedError)]
            known = [d for d in delays if d is not None]
            if len(known) == len(transient):
                raise RateLimitedError(reasons, max(known))
            raise TransientChannelError(reasons)
        refused = "; ".join(e.reason for e in errors if isinstance(e, ChannelError))
        if not delivered:
            raise PermanentChannelError(refused)
        target = ", ".join(o.target for o in delivered)
        return ProviderAcceptance(
            status=DeliveryStatus.DELIVERED,
            target=f"{target} (refused: {refused})" if refused else target,
            provider_message_id=delivery.idempotency_key,
        )

    async def _send_one(self, delivery: OutgoingMessage, endpoint: str) -> ProviderAcceptance:
        url = httpx.URL(endpoint)
        target = _display_target(url)
        # Connect to the address that was checked, not a second lookup that DNS rebinding could
        # point elsewhere; Host and TLS SNI keep the original name.
        pinned = await pin(url, f"webhook_url {target}", self._policy, self._resolver)
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, **pinned.headers}

        now = datetime.now(UTC)
        timestamp = int(now.timestamp())
        body = self.payload(delivery, now)
        msg_id = delivery.idempotency_key
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign(self._secret, msg_id, timestamp, body)
        timeout = self._settings.webhook_timeout_seconds
        try:
            response = await self._http.post(
                pinned.url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                extensions=pinned.extensions,
            )
        except httpx.TimeoutException as e:
            raise TransientChannelError(
                f"webhook {target} timed out after {timeout}s ({type(e).__name__})"
            ) from e
        except httpx.TransportError as e:
            raise TransientChannelError(
                f"webhook {target} unreachable: {type(e).__name__}: {e}"
            ) from e

        status = response.status_code
        if response.is_success:
            logger.info(
                "webhook delivered notification=%s to=%s status=%d",
                delivery.notification_id,
                target,
                status,
            )
            return ProviderAcceptance(
                status=DeliveryStatus.DELIVERED, target=target, provider_message_id=msg_id
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RateLimitedError(f"webhook {target} answered 429 Too Many Requests", retry_after)
        if status == 408 or status >= 500:
            raise TransientChannelError(f"webhook {target} answered {status}")
        if response.is_redirect:
            raise PermanentChannelError(
                f"webhook {target} answered {status} redirect; redirects are not followed,"
                " update the webhook_url"
            )
        raise PermanentChannelError(f"webhook {target} answered {status}")
