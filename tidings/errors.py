"""Errors the front door (client, CLI, HTTP) raises to callers. Each names what was wrong."""

from __future__ import annotations

from pydantic import ValidationError


class TidingsError(Exception):
    """Base class: the message is one clear line, safe to show to the caller."""


class InvalidRequest(TidingsError):
    """Bad input, refused before anything was started or written."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str = "") -> InvalidRequest:
        first = error.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or error.title
        message = first["msg"].removeprefix("Value error, ")
        problems = len(error.errors())
        more = (
            f" (and {problems - 1} more problem{'s' if problems > 2 else ''})"
            if problems > 1
            else ""
        )
        return cls(f"{prefix}{loc}", message + more)


class NotFound(TidingsError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class Conflict(TidingsError):
    """The request is well-formed but the notification's state does not allow it now, or its
    idempotency key was used for a different request (then `field` is "idempotency_key")."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class Unauthorized(TidingsError):
    """A request whose credentials (API key, inbox token, receipt signature) are missing or wrong.
    The message never says whether a key exists."""


class Forbidden(TidingsError):
    """An authenticated caller whose key or token does not cover this request."""
