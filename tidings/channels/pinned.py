"""Requests to a user's own endpoint (webhooks, Slack incoming webhooks): checked against
`tidings.targets` at send time and sent to the address that was checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tidings import targets
from tidings.channels.base import PermanentChannelError, TransientChannelError


@dataclass
class Pinned:
    url: httpx.URL  # the checked address in place of the name
    headers: dict[str, str] = field(default_factory=dict)  # Host: the original name
    extensions: dict[str, Any] = field(default_factory=dict)  # TLS SNI: the original name


async def pin(
    url: httpx.URL, what: str, policy: targets.TargetPolicy, resolver: targets.Resolver
) -> Pinned:
    """Refuse the target (PermanentChannelError naming `what`) unless it is public or allowed;
    a name that fails to resolve for now is a TransientChannelError."""
    if url.scheme not in ("http", "https") or url.userinfo:
        raise PermanentChannelError(f"{what}: only http(s) URLs without credentials")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        ip = await targets.resolve(url.host, port, policy, resolver)
    except targets.Unresolvable as e:
        error = PermanentChannelError if e.permanent else TransientChannelError
        raise error(f"{what}: {e}") from e
    except targets.TargetRefused as e:
        raise PermanentChannelError(f"{what}: {e} (TIDINGS_WEBHOOK_ALLOWED_NETWORKS)") from e
    if url.scheme != "https" and not (policy.allows_host(url.host) or policy.allows_address(ip)):
        raise PermanentChannelError(
            f"{what}: must be https:// (http:// only to TIDINGS_WEBHOOK_ALLOWED_NETWORKS)"
        )
    return Pinned(
        url=url.copy_with(host=str(ip)),
        headers={"host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": url.host},
    )
