"""Signed tokens: `base64url(payload) "." base64url(HMAC-SHA256(secret, context + payload))`.

One format for every token Tidings puts in a URL (tracking links, unsubscribe links, inbox
tokens). Each purpose signs under its own `context`, so the same secret never validates a token
minted for another purpose; the purpose's module owns its payload layout, expiry and errors.
Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence


class InvalidSeal(ValueError):
    """Malformed, tampered with, or signed with another secret or context."""


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signature(secret: str, context: bytes, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), context + payload, hashlib.sha256).digest()


def seal(secret: str, context: bytes, payload: bytes) -> str:
    return f"{b64encode(payload)}.{b64encode(signature(secret, context, payload))}"


def unseal(
    secret: str, token: str, contexts: Sequence[bytes], *, what: str, max_chars: int
) -> tuple[bytes, bytes]:
    """The payload and the first of `contexts` whose signature matches; `what` names the token
    in the error ("a tracking token")."""
    if len(token) > max_chars:
        raise InvalidSeal(f"longer than {max_chars} characters")
    encoded, dot, signed = token.partition(".")
    if not dot:
        raise InvalidSeal(f"not {what}")
    try:
        payload, given = b64decode(encoded), b64decode(signed)
    except (binascii.Error, ValueError) as e:
        raise InvalidSeal("not valid base64url") from e
    for context in contexts:
        if hmac.compare_digest(given, signature(secret, context, payload)):
            return payload, context
    raise InvalidSeal("bad signature")
