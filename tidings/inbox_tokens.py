"""Inbox tokens: what a browser holds to read one user's in-app inbox, and nothing else.

A token is `tib_` + `base64url(payload) "." base64url(HMAC-SHA256(secret, context + payload))`
with the payload `{"u": user_id, "exp": unix seconds}`, signed with TIDINGS_INBOX_SECRET. It is
minted by a server that holds an API key (`Tidings.inbox_token`, `POST /v1/users/{id}/inbox-token`)
and handed to that user's browser; the inbox routes accept it for that user only, until it expires.
Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PREFIX = "tib_"
MAX_TOKEN_CHARS = 1024
DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(days=7)
_CONTEXT = b"tidings-inbox-v1\x00"


class InvalidInboxToken(ValueError):
    """Malformed, tampered with, signed with another secret, or expired."""


@dataclass(frozen=True)
class InboxGrant:
    user_id: str
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + payload, hashlib.sha256).digest()


def mint(secret: str, user_id: str, expires_at: datetime) -> str:
    payload = json.dumps(
        {"u": user_id, "exp": int(expires_at.timestamp())}, separators=(",", ":")
    ).encode()
    return f"{PREFIX}{_b64(payload)}.{_b64(_signature(secret, payload))}"


def verify(secret: str, token: str, *, now: datetime | None = None) -> InboxGrant:
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidInboxToken("not an inbox token")
    encoded, dot, signature = token.removeprefix(PREFIX).partition(".")
    if not dot:
        raise InvalidInboxToken("not an inbox token")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError) as e:
        raise InvalidInboxToken("not valid base64url") from e
    if not hmac.compare_digest(given, _signature(secret, payload)):
        raise InvalidInboxToken("bad signature")
    fields = json.loads(payload)
    expires_at = datetime.fromtimestamp(int(fields["exp"]), UTC)
    if expires_at <= (now or datetime.now(UTC)):
        raise InvalidInboxToken("expired")
    return InboxGrant(user_id=str(fields["u"]), expires_at=expires_at)
