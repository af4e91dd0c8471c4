"""A Twilio Messages API emulator: `POST /2010-04-01/Accounts/{sid}/Messages.json` with basic
auth, form-encoded parameters, Twilio's message resource on success and its error bodies
(`code`, `message`, `more_info`, `status`) on failure.

An invalid-token fault names a phone number; its `code` picks the error (21211 invalid number by
default, 21610 unsubscribed, 21614 not a mobile). The idempotency header is recorded, not acted
on: Twilio does not document de-duplicating message creation on it, and neither do we.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starter.dev.emulators.base import Emulator, Received, Response
from tidings.channels.sms_segments import sms_segments

DEV_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEV_AUTH_TOKEN = "dev-auth-token"
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21604: "A 'To' phone number is required.",
    21603: "A 'From' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


@dataclass(frozen=True)
class Sms:
    sid: str
    to: str
    sender: str
    body: str
    status_callback: str | None
    idempotency_token: str | None


def _error(status: int, code: int, **fmt: str) -> Response:
    return Response.json(
        status,
        {
            "code": code,
            "message": MESSAGES.get(code, "Error").format(**fmt),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class TwilioEmulator(Emulator):
    name = "Twilio"
    default_port = 8033

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        account_sid: str = DEV_ACCOUNT_SID,
        auth_token: str = DEV_AUTH_TOKEN,
    ) -> None:
        super().__init__(host, port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[Sms] = []

    def reset(self) -> None:
        super().reset()
        self.messages.clear()

    def server_error(self, status: int) -> Response:
        return _error(status, 20500 if status == 500 else 20503)

    def rate_limited(self, retry_after: float | None) -> Response:
        resp = _error(429, 20429)
        if retry_after is not None:
            resp.headers["retry-after"] = f"{retry_after:g}"
        return resp

    def _authorised(self, req: Received) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(
            f"{user}:{password}".encode(), f"{self.account_sid}:{self.auth_token}".encode()
        )

    async def handle(self, req: Received) -> Response:
        match = _MESSAGES.match(req.path)
        if match is None or req.method != "POST":
            return _error(404, 20404)
        if not self._authorised(req) or match["sid"] != self.account_sid:
            return _error(401, 20003)
        form = req.form()
        to, body = form.get("To", ""), form.get("Body", "")
        sender = form.get("From") or form.get("MessagingServiceSid", "")
        if not to:
            return _error(400, 21604)
        if not sender:
            return _error(400, 21603)
        if not body:
            return _error(400, 21602)
        if len(body) > 1600:
            return _error(400, 21617)
        if not _E164.match(to):
            return _error(400, 21211, to=to)
        dead = self.dead_token(to)
        if dead is not None:
            return _error(400, dead.code or 21211, to=to)
        sms = Sms(
            sid="SM" + secrets.token_hex(16),
            to=to,
            sender=sender,
            body=body,
            status_callback=form.get("StatusCallback"),
            idempotency_token=req.headers.get("i-twilio-idempotency-token"),
        )
        self.messages.append(sms)
        return Response.json(201, self._resource(sms, form))

    def _resource(self, sms: Sms, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": sms.sid,
            "account_sid": self.account_sid,
            "to": sms.to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": sms.body,
            "status": "queued",
            "num_segments": str(sms_segments(sms.body)[1]),
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}.json",
        }
