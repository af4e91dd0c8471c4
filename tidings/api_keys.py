"""API keys: what they look like, how they are made and checked. Pure; the store keeps them.

A key is `tid_<id>_<secret>`: `id` is 16 hex characters, public, stored as is and shown in
listings and logs so a key can be recognised without being readable; `secret` is 32 random bytes
(256 bits) in base64url. Only the SHA-256 of the whole key is stored: the secret is random and
long, so a slow password hash would add nothing against guessing and cost a hash per request.

Scopes: `send` (trigger, cancel, reschedule, engagement, inbox tokens), `read` (users, templates,
notifications, stats, inboxes), `admin` (users, devices, preferences, templates, keys). An admin
key may do everything the other two may.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

PREFIX = "tid_"
ID_HEX_CHARS = 16
SECRET_BYTES = 32
MAX_KEY_CHARS = 128


class Scope(StrEnum):
    SEND = "send"
    READ = "read"
    ADMIN = "admin"


class ApiKey(BaseModel):
    """A key as listings show it: never the secret, never its hash."""

    id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: Scope) -> bool:
        return self.revoked_at is None and (scope in self.scopes or Scope.ADMIN in self.scopes)


class CreatedApiKey(BaseModel):
    """What creating a key returns, once: the key itself is not stored and cannot be shown again."""

    api_key: ApiKey
    key: str = Field(description="The key; shown once, keep it in a secret store")


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str
    digest: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate() -> NewKey:
    key_id = secrets.token_hex(ID_HEX_CHARS // 2)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(id=key_id, key=key, digest=digest(key))


def key_id(key: str) -> str | None:
    """The id part of something that looks like a key, else None."""
    if not key.startswith(PREFIX) or len(key) > MAX_KEY_CHARS:
        return None
    found, sep, secret = key.removeprefix(PREFIX).partition("_")
    if not sep or not secret or len(found) != ID_HEX_CHARS:
        return None
    if any(c not in "0123456789abcdef" for c in found):
        return None
    return found


def matches(key: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(key), stored_digest)


def normalise_scopes(scopes: Iterable[Scope | str]) -> list[Scope]:
    chosen = {Scope(s) for s in scopes}
    if not chosen:
        raise ValueError("give at least one scope (send, read, admin)")
    return sorted(chosen, key=list(Scope).index)
