"""Signed engagement-tracking tokens for links and open pixels (`/t/<token>`).

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))` with the payload
`notification_id|type|expires|url`. The signature binds the URL: `track_links` rewrites the
http(s) URLs of a rendered message into tokens, so a token signed with the service's secret
names a URL that was in a message Tidings made, and `/t/` redirects to nothing else (a changed
URL breaks the signature; production refuses the public development secret, with which anyone
could sign). The redirect checks the scheme again: only absolute http(s) URLs, never
`javascript:` or relative ones.

Tokens expire: the engagement window (how long a notification takes engagement) plus
TIDINGS_TRACKING_GRACE_HOURS (default 7 days, for a message opened late), counted from when
the link was made. An expired link, or one to a refused URL, is a 404 with no redirect. Tokens
of the first format (no expiry, context v1) are no longer accepted.

Pure functions, so rendering and activities can build links without the HTTP layer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from tidings.models import EngagementType, RenderedMessage
from tidings.settings import Settings

# Tokens travel in URL paths; anything longer than this was not made by us.
MAX_TOKEN_CHARS = 4096
# Domain separation: the same secret must never validate a token minted for another purpose.
_CONTEXT = b"tidings-tracking-v2\x00"
_LINK = re.compile(r"https?://[^\s<>\"'`]+")


class InvalidToken(ValueError):
    """The token is malformed, tampered with, or signed with another secret."""


class ExpiredToken(InvalidToken):
    """Signed by us, but past its expiry."""


class RefusedTarget(InvalidToken):
    """Signed, but the URL is not an absolute http(s) URL (only a leaked secret makes one)."""


@dataclass(frozen=True)
class TrackedAction:
    notification_id: str
    type: EngagementType
    url: str  # empty for an open pixel
    expires_at: datetime


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
    expires = int(action.expires_at.timestamp())
    payload = f"{action.notification_id}|{action.type.value}|{expires}|{action.url}".encode()
    return f"{_b64encode(payload)}.{_b64encode(_signature(secret, payload))}"


def verify(secret: str, token: str, *, now: datetime | None = None) -> TrackedAction:
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
    try:
        notification_id, type_, expires, url = payload.decode().split("|", 3)
        expires_at = datetime.fromtimestamp(int(expires), UTC)
    except ValueError as e:
        raise InvalidToken("not a tracking token of this version") from e
    try:
        kind = EngagementType(type_)
    except ValueError as e:
        raise InvalidToken(f"unknown engagement type {type_!r}") from e
    if expires_at <= (now or datetime.now(UTC)):
        raise ExpiredToken("the link has expired")
    if kind is not EngagementType.OPENED:
        try:
            _check_url(url)
        except ValueError as e:
            raise RefusedTarget("the link's target is not an http(s) URL") from e
    return TrackedAction(notification_id, kind, url, expires_at)


def expiry(settings: Settings, *, now: datetime | None = None) -> datetime:
    """When a link made now stops working: the engagement window plus the grace period."""
    hours = settings.engagement_window_hours + settings.tracking_grace_hours
    return (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(hours=hours)


def make_tracking_link(
    settings: Settings,
    base_url: str,
    notification_id: str,
    url: str,
    *,
    expires_at: datetime | None = None,
) -> str:
    """A link that records a `clicked` engagement and then redirects to `url`."""
    action = TrackedAction(
        notification_id, EngagementType.CLICKED, url, expires_at or expiry(settings)
    )
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"


def make_open_pixel(
    settings: Settings, base_url: str, notification_id: str, *, expires_at: datetime | None = None
) -> str:
    """The URL of a 1x1 image that records an `opened` engagement when fetched."""
    action = TrackedAction(
        notification_id, EngagementType.OPENED, "", expires_at or expiry(settings)
    )
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"


def track_links(
    settings: Settings, base_url: str, notification_id: str, message: RenderedMessage
) -> RenderedMessage:
    """`message` with every http(s) URL of its text and HTML replaced by a tracking link: click
    tokens are minted for the URLs of the rendered message and nothing else."""
    when = expiry(settings)

    def rewrite(text: str, *, in_html: bool) -> str:
        def link(match: re.Match[str]) -> str:
            url = html.unescape(match.group(0)) if in_html else match.group(0)
            tracked = make_tracking_link(settings, base_url, notification_id, url, expires_at=when)
            return html.escape(tracked, quote=True) if in_html else tracked

        return _LINK.sub(link, text)

    return message.model_copy(
        update={
            "text": rewrite(message.text, in_html=False),
            "html": None if message.html is None else rewrite(message.html, in_html=True),
        }
    )


def track_email(
    settings: Settings, base_url: str, notification_id: str, message: RenderedMessage
) -> RenderedMessage:
    """An email as it goes out when tracking is on: every http(s) link of both parts a click
    link (`track_links`), and an open pixel appended to the HTML part (after the rewrite, so
    the pixel is not itself wrapped)."""
    tracked = track_links(settings, base_url, notification_id, message)
    if tracked.html is None:
        return tracked
    pixel = html.escape(make_open_pixel(settings, base_url, notification_id), quote=True)
    img = f'<img src="{pixel}" width="1" height="1" alt="" style="display:none">'
    return tracked.model_copy(update={"html": tracked.html + img})
