"""Inbox tokens: what a browser holds to read one user's in-app inbox, and nothing else.

A token is `tib_` + `base64url(payload) "." base64url(HMAC-SHA256(secret, context + payload))`
with the payload `{"u": user_id, "exp": unix seconds}`, signed with TIDINGS_INBOX_SECRET. It is
minted by a server that holds an API key (`Tidings.inbox_token`, `POST /v1/users/{id}/inbox-token`)
and handed to that user's browser; the inbox routes accept it for that user only, until it expires.
Pure functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tidings.signing import InvalidSeal, seal, unseal

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


def mint(secret: str, user_id: str, expires_at: datetime) -> str:
    payload = json.dumps(
        {"u": user_id, "exp": int(expires_at.timestamp())}, separators=(",", ":")
    ).encode()
    return PREFIX + seal(secret, _CONTEXT, payload)


def verify(secret: str, token: str, *, now: datetime | None = None) -> InboxGrant:
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidInboxToken("not an inbox token")
    try:
        payload, _ = unseal(
            secret,
            token.removeprefix(PREFIX),
            [_CONTEXT],
            what="an inbox token",
            max_chars=MAX_TOKEN_CHARS,
        )
    except InvalidSeal as e:
        raise InvalidInboxToken(str(e)) from e
    fields = json.loads(payload)
    expires_at = datetime.fromtimestamp(int(fields["exp"]), UTC)
    if expires_at <= (now or datetime.now(UTC)):
        raise InvalidInboxToken("expired")
    return InboxGrant(user_id=str(fields["u"]), expires_at=expires_at)
