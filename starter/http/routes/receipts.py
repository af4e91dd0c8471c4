"""Delivery receipts from providers: /v1/receipts/twilio (Twilio status callbacks, signed with
the account's auth token) and /v1/receipts (any provider or relay, Standard Webhooks signed with
TIDINGS_RECEIPT_SECRET). Unsigned or badly signed receipts are refused with 401 and change
nothing."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from starter.http.deps import Api
from tidings.channels.webhook import verify
from tidings.errors import InvalidRequest, NotFound, Unauthorized
from tidings.models import Channel, ChannelResult
from tidings.receipts import TWILIO_FINAL_STATUS, DeliveryReceipt, verify_twilio

router = APIRouter()


class ReceiptOutcome(BaseModel):
    applied: bool
    channel: ChannelResult | None = None


@router.post(
    "/receipts/twilio",
    summary="Twilio SMS status callback",
    response_model=ReceiptOutcome,
)
async def twilio_status(request: Request, tidings: Api) -> ReceiptOutcome:
    settings = tidings.settings
    form = {k: str(v) for k, v in (await request.form()).items()}
    tokens = [settings.twilio_auth_token] if settings.twilio_auth_token else []
    tokens += [a.auth_token for a in settings.twilio_fallback_accounts]
    if not tokens or settings.public_base_url is None:
        raise NotFound("receipt endpoint", "twilio (Twilio is not configured)")
    # Twilio signs the URL it called, which is our public URL, not what a proxy forwarded; each
    # account (failover included) signs with its own auth token.
    url = settings.public_base_url.rstrip("/") + "/v1/receipts/twilio"
    signature = request.headers.get("x-twilio-signature", "")
    if not any(verify_twilio(t.get_secret_value(), url, form, signature) for t in tokens):
        raise Unauthorized("x-twilio-signature: missing or does not match")
    sid, status = form.get("MessageSid"), form.get("MessageStatus", "")
    if not sid:
        raise InvalidRequest("MessageSid", "missing")
    if status not in TWILIO_FINAL_STATUS:
        return ReceiptOutcome(applied=False)  # queued/sent/...: nothing new
    notification_id = await tidings.find_send(Channel.SMS, sid)
    if notification_id is None:
        return ReceiptOutcome(applied=False)
    error = form.get("ErrorCode")
    receipt = DeliveryReceipt(
        notification_id=notification_id,
        channel=Channel.SMS,
        status=TWILIO_FINAL_STATUS[status],
        reason=f"twilio: {status}" + (f" (error {error})" if error else ""),
        provider_message_id=sid,
    )
    updated = await tidings.record_receipt(receipt)
    return ReceiptOutcome(applied=updated is not None, channel=updated)


@router.post("/receipts", summary="A signed delivery receipt", response_model=ReceiptOutcome)
async def generic_receipt(request: Request, tidings: Api) -> ReceiptOutcome:
    body = await request.body()
    try:
        verify(tidings.settings.receipt_secret.get_secret_value(), request.headers, body)
    except ValueError as e:
        raise Unauthorized(f"webhook-signature: {e}") from e
    try:
        receipt = DeliveryReceipt.model_validate(json.loads(body))
    except (ValueError, ValidationError) as e:
        if isinstance(e, ValidationError):
            raise InvalidRequest.from_validation(e) from e
        raise InvalidRequest("body", "not JSON") from e
    updated = await tidings.record_receipt(receipt)
    return ReceiptOutcome(applied=updated is not None, channel=updated)
