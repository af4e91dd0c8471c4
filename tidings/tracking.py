"""Signed engagement-tracking tokens for links and open pixels (`/t/<token>`), and the link
rewrite that puts them into messages.

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, context + payload))` with the
payload `notification_id|type|channel|expires|url` (v3; v2 tokens, `notification_id|type|
expires|url` under their own context, are still honoured and carry no channel). The signature
binds the URL: the rewrite mints tokens for the URLs of a rendered message, so a token signed
with the service's secret names a URL that was in a message Tidings made, and `/t/` redirects
to nothing else (a changed URL breaks the signature; production refuses the public development
secret, with which anyone could sign). The redirect checks the scheme again: only absolute
http(s) URLs, never `javascript:` or relative ones.

What is rewritten: in HTML only the href of `<a>` tags (`tidings.html_links`); in text every
http(s) URL. A URL marked by the `untracked` template filter (`MARK_OPEN`...`MARK_CLOSE`), an
`<a data-tidings-untracked>`, and links to the service's own `/t/` and `/u/` stay as written.

Tokens expire: the engagement window (how long a notification takes engagement) plus
TIDINGS_TRACKING_GRACE_HOURS (default 7 days, for a message opened late), counted from when
the link was made. An expired link, or one to a refused URL, is a 404 with no redirect. Tokens
of the first format (no expiry, context v1) are no longer accepted.

Pure functions, so rendering and activities can build links without the HTTP layer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from tidings.html_links import rewrite_anchor_hrefs
from tidings.models import Channel, EngagementType, RenderedMessage
from tidings.settings import Settings
from tidings.signing import InvalidSeal, seal, unseal

# Tokens travel in URL paths; anything longer than this was not made by us.
MAX_TOKEN_CHARS = 4096
# Domain separation: the same secret must never validate a token minted for another purpose.
# v3 tokens name the channel the link was sent on; v2 tokens (email only, no channel) are
# still honoured until they expire.
_CONTEXT = b"tidings-tracking-v3\x00"
_CONTEXT_V2 = b"tidings-tracking-v2\x00"
# A URL in plain text stops at white space, quotes, angle brackets and `|` (Slack's
# `<url|label>`; a literal `|` must be percent-encoded in a URL anyway).
_LINK = re.compile(r"https?://[^\s<>\"'`|]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the URL ("see https://x.com/a.").
_TRAILING = ".,;:!?"

# What the `untracked` template filter wraps a URL in (Unicode private-use characters, which no
# template or URL has a reason to contain): the link rewrite leaves a marked URL as written and
# removes the marks; `strip_marks` removes them wherever tracking does not run.
MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
_MARKED_OR_LINK = re.compile(
    f"{MARK_OPEN}[^{MARK_OPEN}{MARK_CLOSE}]*{MARK_CLOSE}|{_LINK.pattern}", re.IGNORECASE
)


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
    channel: Channel | None = None  # the channel the link was sent on (None: a v2 token)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"tracked URLs must be absolute http(s) URLs, not {url!r}")


def sign(secret: str, action: TrackedAction) -> str:
    """A v3 token: payload `notification_id|type|channel|expires|url` (channel may be empty)."""
    if "|" in action.notification_id:
        raise ValueError("notification_id must not contain '|'")
    if action.type is EngagementType.OPENED:
        if action.url:
            raise ValueError("an open pixel carries no URL")
    else:
        _check_url(action.url)
    expires = int(action.expires_at.timestamp())
    channel = "" if action.channel is None else Channel(action.channel).value
    payload = (
        f"{action.notification_id}|{action.type.value}|{channel}|{expires}|{action.url}".encode()
    )
    return seal(secret, _CONTEXT, payload)


def _fields(payload: bytes, context: bytes) -> tuple[str, str, str, str, str]:
    """The payload's fields by the version it was signed as: v3, else v2."""
    try:
        text = payload.decode()
    except UnicodeDecodeError as e:
        raise InvalidToken("not a tracking token of this version") from e
    if context == _CONTEXT:
        parts = text.split("|", 4)
        if len(parts) == 5:
            return parts[0], parts[1], parts[2], parts[3], parts[4]
    else:
        parts = text.split("|", 3)
        if len(parts) == 4:
            return parts[0], parts[1], "", parts[2], parts[3]
    raise InvalidToken("not a tracking token of this version")


def verify(secret: str, token: str, *, now: datetime | None = None) -> TrackedAction:
    try:
        payload, context = unseal(
            secret,
            token,
            [_CONTEXT, _CONTEXT_V2],
            what="a tracking token",
            max_chars=MAX_TOKEN_CHARS,
        )
    except InvalidSeal as e:
        raise InvalidToken(str(e)) from e
    # Signed by us, so the layout is ours; a parse failure here means a changed format.
    notification_id, type_, channel_, expires, url = _fields(payload, context)
    try:
        expires_at = datetime.fromtimestamp(int(expires), UTC)
    except (ValueError, OverflowError, OSError) as e:
        raise InvalidToken("not a tracking token of this version") from e
    try:
        kind = EngagementType(type_)
        channel = Channel(channel_) if channel_ else None
    except ValueError as e:
        raise InvalidToken(f"unknown engagement type or channel {type_!r}/{channel_!r}") from e
    if expires_at <= (now or datetime.now(UTC)):
        raise ExpiredToken("the link has expired")
    if kind is not EngagementType.OPENED:
        try:
            _check_url(url)
        except ValueError as e:
            raise RefusedTarget("the link's target is not an http(s) URL") from e
    return TrackedAction(notification_id, kind, url, expires_at, channel)


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
    channel: Channel | None = Channel.EMAIL,
) -> str:
    """A link that records a `clicked` engagement on `channel` and then redirects to `url`."""
    action = TrackedAction(
        notification_id, EngagementType.CLICKED, url, expires_at or expiry(settings), channel
    )
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"


def make_open_pixel(
    settings: Settings,
    base_url: str,
    notification_id: str,
    *,
    expires_at: datetime | None = None,
    channel: Channel | None = Channel.EMAIL,
) -> str:
    """The URL of a 1x1 image that records an `opened` engagement when fetched."""
    action = TrackedAction(
        notification_id, EngagementType.OPENED, "", expires_at or expiry(settings), channel
    )
    token = sign(settings.tracking_secret.get_secret_value(), action)
    return f"{base_url.rstrip('/')}/t/{token}"


def mark_untracked(url: str) -> str:
    """`url` marked so that the link rewrite keeps it as written (the `untracked` filter)."""
    return f"{MARK_OPEN}{strip_marks(url)}{MARK_CLOSE}"


def strip_marks(text: str) -> str:
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def _split_trailing(url: str) -> tuple[str, str]:
    """A URL found in prose without the punctuation that follows it: the sentence's full stop,
    and a closing parenthesis the URL did not open."""
    end = len(url)
    while end > 0:
        ch = url[end - 1]
        if ch in _TRAILING or (ch == ")" and url.count("(", 0, end) < url.count(")", 0, end)):
            end -= 1
            continue
        break
    return url[:end], url[end:]


class _Tracker:
    """Mints the click links of one message: one expiry, one channel, our own links left alone
    (an unsubscribe or tracking URL of this service is never wrapped again)."""

    def __init__(
        self, settings: Settings, base_url: str, notification_id: str, channel: Channel
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.notification_id = notification_id
        self.channel = channel
        self.expires_at = expiry(settings)

    def link(self, url: str) -> str | None:
        """The tracked link for `url`, or None to keep it: not http(s), marked, or ours."""
        if MARK_OPEN in url or MARK_CLOSE in url:
            return None
        try:
            _check_url(url)
        except ValueError:
            return None
        if url.startswith((f"{self.base_url}/t/", f"{self.base_url}/u/")):
            return None
        return make_tracking_link(
            self.settings,
            self.base_url,
            self.notification_id,
            url,
            expires_at=self.expires_at,
            channel=self.channel,
        )

    def text(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            found = match.group(0)
            if found.startswith(MARK_OPEN):
                return strip_marks(found)
            url, tail = _split_trailing(found)
            tracked = self.link(url)
            return (url if tracked is None else tracked) + tail

        return strip_marks(_MARKED_OR_LINK.sub(one, text))

    def html(self, document: str) -> str:
        return strip_marks(rewrite_anchor_hrefs(document, self.link))


def track_text(
    settings: Settings, base_url: str, notification_id: str, channel: Channel, text: str
) -> str:
    """Plain text (an email's text part, an SMS, a Slack message) with every http(s) URL but
    the marked ones replaced by a click link that records `channel`."""
    return _Tracker(settings, base_url, notification_id, channel).text(text)


def track_url(
    settings: Settings, base_url: str, notification_id: str, channel: Channel, url: str
) -> str:
    """One link field (a push's click URL) tracked, or as given when it is not http(s)."""
    tracked = _Tracker(settings, base_url, notification_id, channel).link(url)
    return strip_marks(url) if tracked is None else tracked


def track_links(
    settings: Settings, base_url: str, notification_id: str, message: RenderedMessage
) -> RenderedMessage:
    """`message` with its links replaced by tracking links on the message's channel: every
    http(s) URL of its text, and the href of every `<a>` of its HTML (not images, styles or
    text). URLs marked `untracked`, `<a data-tidings-untracked>` and links to this service's
    own `/t/` and `/u/` are kept as written; the marks are removed."""
    tracker = _Tracker(settings, base_url, notification_id, message.channel)
    return message.model_copy(
        update={
            "subject": strip_marks(message.subject),
            "text": tracker.text(message.text),
            "html": None if message.html is None else tracker.html(message.html),
        }
    )


def track_email(
    settings: Settings, base_url: str, notification_id: str, message: RenderedMessage
) -> RenderedMessage:
    """An email as it goes out when tracking is on: its links click links (`track_links`),
    and an open pixel appended to the HTML part (after the rewrite, so the pixel is not itself
    wrapped)."""
    tracked = track_links(settings, base_url, notification_id, message)
    if tracked.html is None:
        return tracked
    pixel = html.escape(
        make_open_pixel(settings, base_url, notification_id, channel=message.channel), quote=True
    )
    img = f'<img src="{pixel}" width="1" height="1" alt="" style="display:none">'
    return tracked.model_copy(update={"html": tracked.html + img})
