"""Signed engagement-tracking tokens for links and open pixels (`/t/<token>`).

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))` with the payload
`notification_id|type|url`. The signature is what stops the tracking endpoint from being an open
redirect: it only ever redirects to URLs that Tidings itself put into a message. Pure functions,
so rendering and activities can build links without the HTTP layer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from tidings.models import EngagementType
from tidings.settings import Settings

# Tokens travel in URL paths; anything longer than this was not made by us.
MAX_TOKEN_CHARS = 4096
# Domain separation: the same secret must never validate a token minted for another purpose.
_CONTEXT = b"tidings-tracking-v1\x00"


class InvalidToken(ValueError):
    """The token is malformed, tampered with, or signed with another secret."""


@dataclass(frozen=True)
class TrackedAction:
    notification_id: str
    type: EngagementType
    url: str  # empty for an open pixel


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + payload, hashlib.sha256).digest()


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"tracked URLs must be absolute http(s) URLs, not {url!r}")


def sign(secret: str, action: TrackedAction) -> str:
    if "|" in action.notification_id:
        raise ValueError("notification_id must not contain '|'")
    if action.type is EngagementType.OPENED:
        if action.url:
            raise ValueError("an open pixel carries no URL")
    else:
        _check_url(action.url)
    payload = f"{action.notification_id}|{action.type.value}|{action.url}".encode()
    return f"{_b64encode(payload)}.{_b64encode(_signature(secret, payload))}"


def verify(secret: str, token: str) -> TrackedAction:
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken(f"longer than {MAX_TOKEN_CHARS} characters")
    encoded, dot, signature = token.partition(".")
    if not dot:
        raise InvalidToken("not a tracking token")
    try:
        payload = _b64decode(encoded)
        given = _b64decode(signature)
    except (binascii.Error, ValueError) as e:
        raise InvalidToken("not valid base64url") from e
    if not hmac.compare_digest(given, _signature(secret, payload)):
        raise InvalidToken("bad signature")
    # Signed by us, so the layout is ours; a parse failure here means a changed format.
    notification_id, _, rest = payload.decode().partition("|")
    type_, _, url = rest.partition("|")
    try:
        return TrackedAction(notification_id, EngagementType(type_), url)
    except ValueError as e:
        raise InvalidToken(f"unknown engagement type {type_!r}") from e


def make_tracking_link(settings: Settings, base_url: str, notification_id: str, url: str) -> str:
    """A link that records a `clicked` engagement and then redirects to `url`."""
    action = TrackedAction(notification_id, EngagementType.CLICKED, url)
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"


def make_open_pixel(settings: Settings, base_url: str, notification_id: str) -> str:
    """The URL of a 1x1 image that records an `opened` engagement when fetched."""
    action = TrackedAction(notification_id, EngagementType.OPENED, "")
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"
