"""Slack: `chat.postMessage` with the bot token when the user has a Slack id and a token is
configured, else the user's incoming webhook.

The body is Block Kit (a header with the subject, sections with the text as mrkdwn) with the
plain `text` as the notification fallback. Slack has no idempotency key, so Slack is
at-least-once: a retry after Slack accepted a message but before the ledger recorded it posts it
again. chat.postMessage carries the notification id as message metadata so duplicates can be found.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from tidings import targets
from tidings.channels import provider_http
from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    TransientChannelError,
)
from tidings.channels.pinned import pin
from tidings.models import Channel, DeliveryStatus
from tidings.settings import Settings

logger = logging.getLogger(__name__)

HEADER_MAX = 150  # Slack's limit on a header block's text
SECTION_MAX = 3000  # and on a section block's text
MAX_BLOCKS = 50
# chat.postMessage answers HTTP 200 with {"ok": false, "error": ...}; these cannot succeed later.
PERMANENT_API_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "invalid_auth",
        "account_inactive",
        "not_authed",
        "token_revoked",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
        "no_text",
        "missing_scope",
        "restricted_action",
    }
)


# A mrkdwn link to a web page, `<https://...>` or `<https://...|label>`: the one `<...>` form
# let through, so that templates can link (and tracking can rewrite the URL).
_LINK = re.compile(r"<(https?://[^\s<>|]+)(?:\|([^<>]*))?>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_mrkdwn(text: str) -> str:
    """Slack reads <...> as links and mentions; a rendered message must not ping @channel.
    Only http(s) links (`<url>`, `<url|label>`) keep their angle brackets."""
    out: list[str] = []
    last = 0
    for m in _LINK.finditer(text):
        out.append(_escape(text[last : m.start()]))
        url, label = m.group(1), m.group(2)
        out.append(f"<{_escape(url)}" + ("" if label is None else f"|{_escape(label)}") + ">")
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def blocks(subject: str, text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if subject:
        header = subject if len(subject) <= HEADER_MAX else subject[: HEADER_MAX - 1] + "…"
        out.append({"type": "header", "text": {"type": "plain_text", "text": header}})
    escaped = escape_mrkdwn(text)
    while escaped:
        cut = len(escaped) if len(escaped) <= SECTION_MAX else _split_at(escaped, SECTION_MAX)
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": escaped[:cut]}})
        escaped = escaped[cut:]
    if len(out) > MAX_BLOCKS:
        raise PermanentChannelError(
            f"slack message text is {len(text)} characters: {len(out)} blocks, the limit is"
            f" {MAX_BLOCKS}"
        )
    return out


def _split_at(text: str, limit: int) -> int:
    """Where to cut: the last newline or space before `limit`, never inside an &entity;."""
    window = text[:limit]
    for sep in ("\n", " "):
        at = window.rfind(sep)
        if at > limit // 2:
            return at + 1
    amp = window.rfind("&", limit - 5)
    return amp if amp > 0 and ";" not in window[amp:] else limit


class SlackSender:
    channel: Channel = Channel.SLACK

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        resolver: targets.Resolver = targets.system_resolver,
    ) -> None:
        self._settings = settings
        self._http = http
        self._policy = settings.webhook_target_policy
        self._resolver = resolver
        token = settings.slack_bot_token
        self._bot_token = token.get_secret_value() if token is not None else None
        self._hosts = {h.lower() for h in settings.slack_webhook_hosts}

    def body(self, delivery: OutgoingMessage) -> dict[str, Any]:
        message = delivery.message
        fallback = f"{message.subject}\n{message.text}" if message.subject else message.text
        return {
            "text": escape_mrkdwn(fallback),
            "blocks": blocks(message.subject, message.text),
            "unfurl_links": False,
        }

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        user = delivery.user
        if user.slack_user_id and self._bot_token:
            return await self._post_message(delivery, user.slack_user_id, self._bot_token)
        if user.slack_webhook_url is not None:
            return await self._webhook(delivery, str(user.slack_webhook_url))
        if user.slack_user_id:
            raise PermanentChannelError(
                f"user {user.id} has a slack_user_id but no TIDINGS_SLACK_BOT_TOKEN is configured"
            )
        raise PermanentChannelError(f"user {user.id} has no slack_webhook_url or slack_user_id")

    def _webhook_target(self, url: httpx.URL) -> str:
        # A Slack host (TIDINGS_SLACK_WEBHOOK_HOSTS), or a network the operator allowed (the
        # emulator on loopback in the dev stack); the address is checked again at send time.
        allowed_host = url.host.lower() in self._hosts
        if not allowed_host and targets.literal_address(url.host) is None:
            allowed_host = self._policy.allows_host(url.host)
        literal = targets.literal_address(url.host)
        allowed_network = literal is not None and self._policy.allows_address(literal)
        if not (allowed_host or allowed_network):
            raise PermanentChannelError(
                f"slack_webhook_url host {url.host!r} is not an allowed Slack webhook host"
                " (TIDINGS_SLACK_WEBHOOK_HOSTS, TIDINGS_WEBHOOK_ALLOWED_NETWORKS)"
            )
        # The path after /services/ is the webhook's secret: keep only its first part.
        parts = url.path.split("/")
        shown = "/".join(parts[:3]) + ("/…" if len(parts) > 3 else "")
        return f"{url.scheme}://{url.host}{shown}"

    async def _webhook(self, delivery: OutgoingMessage, raw_url: str) -> ProviderAcceptance:
        url = httpx.URL(raw_url)
        target = self._webhook_target(url)
        pinned = await pin(url, f"slack_webhook_url {target}", self._policy, self._resolver)
        response = await provider_http.request(
            self._http,
            "Slack webhook",
            "POST",
            str(pinned.url),
            timeout_seconds=self._settings.slack_timeout_seconds,
            json=self.body(delivery),
            headers=pinned.headers,
            extensions=pinned.extensions,
        )
        status = response.status_code
        answer = provider_http.snippet(response, 100)
        if status == 200:
            if response.text.strip() != "ok":
                raise TransientChannelError(
                    f"Slack webhook {target} answered 200 with a malformed body {answer!r}"
                    " (expected 'ok')"
                )
            logger.info(
                "slack webhook sent notification=%s to=%s", delivery.notification_id, target
            )
            return ProviderAcceptance(status=DeliveryStatus.SENT, target=target)
        reason = f"Slack webhook {target} answered {status} {answer}"
        if status == 429:
            raise provider_http.rate_limited(response, reason)
        if status >= 500 or status == 408:
            raise TransientChannelError(reason)
        # invalid_payload, no_text, action_prohibited, channel_not_found, no_service, ...
        raise PermanentChannelError(reason)

    async def _post_message(
        self, delivery: OutgoingMessage, channel: str, token: str
    ) -> ProviderAcceptance:
        target = f"slack:{channel}"
        body = {
            "channel": channel,
            **self.body(delivery),
            "metadata": {
                "event_type": "tidings_notification",
                "event_payload": {"notification_id": delivery.notification_id},
            },
        }
        base = self._settings.slack_base_url.rstrip("/")
        response = await provider_http.request(
            self._http,
            "Slack chat.postMessage",
            "POST",
            f"{base}/api/chat.postMessage",
            timeout_seconds=self._settings.slack_timeout_seconds,
            json=body,
            headers={"authorization": f"Bearer {token}"},
        )
        status = response.status_code
        if status == 429:
            raise provider_http.rate_limited(
                response, f"Slack chat.postMessage answered 429 for {target}"
            )
        if status >= 500 or status == 408:
            raise TransientChannelError(f"Slack chat.postMessage answered {status}")
        answer = provider_http.json_object(response, "Slack chat.postMessage")
        if answer.get("ok") is True:
            ts = answer.get("ts")
            logger.info(
                "slack message sent notification=%s to=%s", delivery.notification_id, target
            )
            return ProviderAcceptance(
                status=DeliveryStatus.SENT,
                target=target,
                provider_message_id=ts if isinstance(ts, str) else None,
            )
        error = answer.get("error")
        if answer.get("ok") is not False or not isinstance(error, str):
            raise TransientChannelError(
                f"Slack chat.postMessage answered {status} with a malformed body:"
                f" {provider_http.snippet(response)!r}"
            )
        reason = f"Slack chat.postMessage to {target} failed: {error}"
        if error == "ratelimited":
            raise provider_http.rate_limited(response, reason)
        if error in PERMANENT_API_ERRORS or status in (400, 401, 403, 404):
            raise PermanentChannelError(reason)
        raise TransientChannelError(reason)
