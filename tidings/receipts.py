"""Delivery receipts: providers telling us, later, what happened to a message we handed them.

A receipt moves one channel of one notification from `sent` to `delivered` or `failed`, and only
forwards: a late or repeated receipt never moves a delivered channel back. Receipts must be
authenticated so nobody can forge a delivery: Twilio signs its status callbacks with the account's
auth token (X-Twilio-Signature); our generic receipt endpoint takes Standard Webhooks signatures
made with `TIDINGS_RECEIPT_SECRET`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from tidings.models import Channel, DeliveryStatus, Model

# Twilio MessageStatus values that settle a message; the others (queued, sending, sent,
# accepted, scheduled) say nothing we do not know already.
TWILIO_FINAL_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
}


class DeliveryReceipt(Model):
    notification_id: str = Field(min_length=1, max_length=300)
    channel: Channel
    status: Literal[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
    reason: str | None = Field(default=None, max_length=1000)
    provider_message_id: str | None = Field(default=None, max_length=300)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's scheme: HMAC-SHA1 over the full URL followed by every POST parameter's name and
    value, sorted by name; base64."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    return hmac.compare_digest(twilio_signature(auth_token, url, params), signature)
