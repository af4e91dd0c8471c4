"""A Slack emulator: incoming webhooks (`POST /services/T…/B…/…`, answering "ok" or a short error
string with a 4xx) and the Web API's `POST /api/chat.postMessage` (bearer bot token; always
HTTP 200 with `{"ok": ...}` except for rate limiting, which is HTTP 429 with Retry-After).

Faults: an invalid token names a webhook path or a channel id (answering `no_service` /
`channel_not_found`); mode "error" with `"error": "ratelimited"` (or any Slack error string)
makes chat.postMessage answer `{"ok": false, "error": ...}` for the next `count` calls.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from starter.dev.emulators.base import Emulator, Fault, Received, Response

DEV_BOT_TOKEN = "xoxb-tidings-dev"
HEADER_MAX = 150
SECTION_MAX = 3000


@dataclass(frozen=True)
class Posted:
    via: str  # "webhook" or "chat.postMessage"
    target: str  # the webhook path or the channel id
    payload: dict[str, Any]
    ts: str


def _blocks_error(payload: dict[str, Any]) -> str | None:
    blocks = payload.get("blocks")
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        text = block.get("text", {}) if isinstance(block, dict) else None
        if not isinstance(text, dict) or not isinstance(text.get("text"), str):
            return "invalid_blocks"
        limit = HEADER_MAX if block.get("type") == "header" else SECTION_MAX
        if block.get("type") == "header" and text.get("type") != "plain_text":
            return "invalid_blocks"
        if len(text["text"]) > limit:
            return "invalid_blocks"
    return None


class SlackEmulator(Emulator):
    name = "Slack"
    default_port = 8034
    extra_modes = frozenset({"error"})

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, bot_token: str = DEV_BOT_TOKEN
    ) -> None:
        super().__init__(host, port)
        self.bot_token = bot_token
        self.posted: list[Posted] = []

    def webhook_url(self, name: str = "T000DEV/B000DEV/dev") -> str:
        return f"{self.url}/services/{name}"

    def reset(self) -> None:
        super().reset()
        self.posted.clear()

    def server_error(self, status: int) -> Response:
        return Response.text(status, "rollup_error" if status == 500 else "service_unavailable")

    def fault_response(self, fault: Fault, req: Received) -> Response:
        error = fault.error or "internal_error"
        if req.path.startswith("/services/"):
            return Response.text(400, error)
        return Response.json(200, {"ok": False, "error": error})

    def _record(self, via: str, target: str, payload: dict[str, Any]) -> str:
        ts = f"{time.time():.6f}"
        self.posted.append(Posted(via=via, target=target, payload=payload, ts=ts))
        return ts

    async def handle(self, req: Received) -> Response:
        if req.method == "POST" and req.path.startswith("/services/"):
            return self._webhook(req)
        if req.method == "POST" and req.path == "/api/chat.postMessage":
            return self._post_message(req)
        return Response.text(404, "not_found")

    def _webhook(self, req: Received) -> Response:
        hook = req.path.removeprefix("/services/")
        if len(hook.split("/")) != 3 or self.dead_token(hook) or self.dead_token(req.path):
            return Response.text(404, "no_service")
        try:
            payload = req.json()
        except ValueError:
            return Response.text(400, "invalid_payload")
        if not isinstance(payload, dict):
            return Response.text(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return Response.text(400, "no_text")
        error = _blocks_error(payload)
        if error:
            return Response.text(400, error)
        self._record("webhook", hook, payload)
        return Response.text(200, "ok")

    def _post_message(self, req: Received) -> Response:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return Response.json(200, {"ok": False, "error": "not_authed"})
        if not secrets.compare_digest(auth[7:].encode(), self.bot_token.encode()):
            return Response.json(200, {"ok": False, "error": "invalid_auth"})
        try:
            payload = req.json()
        except ValueError:
            return Response.json(200, {"ok": False, "error": "invalid_json"})
        if not isinstance(payload, dict):
            return Response.json(200, {"ok": False, "error": "invalid_json"})
        channel = payload.get("channel")
        if not isinstance(channel, str) or not channel or self.dead_token(channel):
            return Response.json(200, {"ok": False, "error": "channel_not_found"})
        if not payload.get("text") and not payload.get("blocks"):
            return Response.json(200, {"ok": False, "error": "no_text"})
        error = _blocks_error(payload)
        if error:
            return Response.json(200, {"ok": False, "error": error})
        ts = self._record("chat.postMessage", channel, payload)
        return Response.json(
            200,
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": payload.get("text")}},
        )
