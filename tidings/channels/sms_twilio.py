"""SMS through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).

The segment count is checked before sending: a text over `sms_max_segments` is refused, never
truncated. The delivery's idempotency key goes in `I-Twilio-Idempotency-Token`, but Twilio does
not document de-duplicating message creation on it, so SMS is at-least-once: a retry after Twilio
accepted a message and before the ledger recorded it sends a second SMS.
"""

from __future__ import annotations

import logging

import httpx

from tidings.channels import provider_http
from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    TransientChannelError,
)
from tidings.channels.sms_segments import sms_segments
from tidings.models import Channel, DeliveryStatus
from tidings.settings import Settings

logger = logging.getLogger(__name__)

RECEIPTS_PATH = "/v1/receipts/twilio"
# Twilio error codes that mean this recipient cannot be reached: retrying cannot help.
RECIPIENT_ERRORS = {
    21211: "invalid To number",
    21408: "region not enabled",
    21610: "recipient unsubscribed (replied STOP)",
    21612: "To number not reachable from this From number",
    21614: "To number is not a mobile number",
}


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:]


class TwilioSmsSender:
    channel: Channel = Channel.SMS

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        s = settings
        if not s.twilio_account_sid or s.twilio_auth_token is None:
            raise ValueError("Twilio needs TIDINGS_TWILIO_ACCOUNT_SID and _AUTH_TOKEN")
        if not (s.twilio_from_number or s.twilio_messaging_service_sid):
            raise ValueError(
                "Twilio needs TIDINGS_TWILIO_FROM_NUMBER or TIDINGS_TWILIO_MESSAGING_SERVICE_SID"
            )
        self._settings = s
        self._http = http
        self._auth = (s.twilio_account_sid, s.twilio_auth_token.get_secret_value())
        self._url = (
            f"{s.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{s.twilio_account_sid}"
            "/Messages.json"
        )

    def form(self, delivery: OutgoingMessage, phone: str) -> dict[str, str]:
        s = self._settings
        form = {"To": phone, "Body": delivery.message.text}
        if s.twilio_messaging_service_sid:
            form["MessagingServiceSid"] = s.twilio_messaging_service_sid
        else:
            form["From"] = str(s.twilio_from_number)
        if s.public_base_url:
            form["StatusCallback"] = s.public_base_url.rstrip("/") + RECEIPTS_PATH
        return form

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        phone = delivery.user.phone
        if not phone:
            raise PermanentChannelError(f"user {delivery.user.id} has no phone number")
        text = delivery.message.text
        encoding, segments = sms_segments(text)
        limit = self._settings.sms_max_segments
        if segments == 0:
            raise PermanentChannelError("sms text is empty")
        if segments > limit:
            raise PermanentChannelError(
                f"sms text is {segments} {encoding} segments ({len(text)} characters); the"
                f" limit is {limit} (TIDINGS_SMS_MAX_SEGMENTS)"
            )
        target = mask_phone(phone)
        response = await provider_http.request(
            self._http,
            "Twilio",
            "POST",
            self._url,
            timeout_seconds=self._settings.twilio_timeout_seconds,
            data=self.form(delivery, phone),
            auth=self._auth,
            headers={"I-Twilio-Idempotency-Token": delivery.idempotency_key},
        )
        status = response.status_code
        if status in (200, 201):
            sid = provider_http.json_object(response, "Twilio").get("sid")
            if not isinstance(sid, str) or not sid.startswith(("SM", "MM")):
                raise TransientChannelError(
                    f"Twilio answered {status} without a message sid:"
                    f" {provider_http.snippet(response)!r}"
                )
            logger.info(
                "sms sent notification=%s to=%s sid=%s segments=%d %s",
                delivery.notification_id,
                target,
                sid,
                segments,
                encoding,
            )
            return ProviderAcceptance(
                status=DeliveryStatus.SENT, target=target, provider_message_id=sid
            )
        raise self._error(response, phone, target)

    @staticmethod
    def _error(response: httpx.Response, phone: str, target: str) -> Exception:
        status = response.status_code
        if status == 429:
            return provider_http.rate_limited(response, f"Twilio answered 429 for {target}")
        if status >= 500:
            return TransientChannelError(f"Twilio answered {status}")
        body = provider_http.json_object(response, "Twilio")
        # Twilio's messages quote the number; the reason is stored and shown, so mask it.
        code, message = body.get("code"), str(body.get("message", "")).replace(phone, target)
        meaning = RECIPIENT_ERRORS.get(code) if isinstance(code, int) else None
        detail = f" ({meaning})" if meaning else ""
        reason = f"Twilio refused the message to {target}: {code} {message}{detail}"
        if status in (401, 403):
            reason = f"Twilio refused the credentials: {code} {message}"
        return PermanentChannelError(reason)
