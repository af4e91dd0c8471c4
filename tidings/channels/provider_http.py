"""What every HTTP provider channel (FCM, APNs, Twilio, Slack) does the same way at the boundary:
one request with an explicit timeout, transport failures classified as transient, and bodies read
defensively, so that a provider answering garbage is a clear transient error, not a KeyError."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tidings.channels.base import RateLimitedError, TransientChannelError
from tidings.channels.webhook import parse_retry_after

__all__ = ["json_object", "parse_retry_after", "rate_limited", "request", "snippet"]


async def request(
    http: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    *,
    timeout_seconds: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; a timeout or a connection failure becomes TransientChannelError."""
    try:
        return await http.request(
            method, url, timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, **kwargs
        )
    except httpx.TimeoutException as e:
        raise TransientChannelError(
            f"{provider} timed out after {timeout_seconds}s ({type(e).__name__})"
        ) from e
    except httpx.TransportError as e:
        raise TransientChannelError(f"{provider} unreachable: {type(e).__name__}: {e}") from e


def snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.content[:limit].decode("utf-8", errors="replace")
    return " ".join(text.split()) or "(empty)"


def json_object(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The body as a JSON object, or TransientChannelError saying what arrived instead."""
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TransientChannelError(
            f"{provider} answered {response.status_code} with a malformed body"
            f" (not JSON): {snippet(response)!r}"
        ) from e
    if not isinstance(body, dict):
        raise TransientChannelError(
            f"{provider} answered {response.status_code} with JSON that is not an object:"
            f" {snippet(response)!r}"
        )
    return body


def rate_limited(response: httpx.Response, reason: str) -> RateLimitedError:
    return RateLimitedError(reason, parse_retry_after(response.headers.get("retry-after")))
