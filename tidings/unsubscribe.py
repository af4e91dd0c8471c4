"""Signed one-click unsubscribe links (`/u/<token>`, RFC 8058) for one user and one category.

A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, context + payload))` with the
payload `user_id|category` (both identifiers, which cannot contain `|`), signed with
TIDINGS_TRACKING_SECRET under its own context so that no tracking token is ever an unsubscribe
token. It does not expire: a message read a year later must still unsubscribe its reader (mail
providers call the List-Unsubscribe URL long after delivery), and all it can do is switch one
category off for one user. Rotating the tracking secret invalidates every link sent before.

CRITICAL notifications carry no unsubscribe link: they bypass opt-outs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.models import Priority
from tidings.settings import Settings
from tidings.signing import InvalidSeal, seal, unseal

MAX_TOKEN_CHARS = 1024
_CONTEXT = b"tidings-unsubscribe-v1\x00"


class InvalidUnsubscribeToken(ValueError):
    """Malformed, tampered with, or signed with another secret."""


@dataclass(frozen=True)
class Unsubscription:
    user_id: str
    category: str


def sign(secret: str, user_id: str, category: str) -> str:
    for name, value in (("user_id", user_id), ("category", category)):
        if "|" in value or not value:
            raise ValueError(f"{name} must be a non-empty identifier")
    payload = f"{user_id}|{category}".encode()
    return seal(secret, _CONTEXT, payload)


def verify(secret: str, token: str) -> Unsubscription:
    try:
        payload, _ = unseal(
            secret, token, [_CONTEXT], what="an unsubscribe token", max_chars=MAX_TOKEN_CHARS
        )
    except InvalidSeal as e:
        raise InvalidUnsubscribeToken(str(e)) from e
    try:
        user_id, category = payload.decode().split("|", 1)
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise InvalidUnsubscribeToken("not an unsubscribe token of this version") from e
    return Unsubscription(user_id, category)


def unsubscribe_url(
    settings: Settings, user_id: str, category: str, *, priority: Priority | None = None
) -> str | None:
    """The one-click URL for this user and category, or None: for CRITICAL notifications,
    and when the service has no public_base_url to point it at."""
    base = settings.public_base_url
    if priority is Priority.CRITICAL or not base:
        return None
    token = sign(settings.tracking_secret.get_secret_value(), user_id, category)
    return f"{base.rstrip('/')}/u/{token}"
