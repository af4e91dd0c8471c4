"""Apple Push Notification service over HTTP/2 with token-based (.p8, ES256) authentication.

The provider token is a JWT (`kid` = key id, `iss` = team id, `iat`) that Apple wants renewed at
most every 20 and at least every 60 minutes; it is reused for 50. `apns-id` is a UUID derived from
the delivery's idempotency key and the device token, so a retried send carries the same id (APNs
echoes it; it does not de-duplicate on it), and `apns-collapse-id` is the notification id, so a
duplicate replaces the first notification on screen rather than showing twice.

The client speaks HTTP/2 only (`http1=False`): over TLS it is negotiated with ALPN, over plain
http (the local emulator) it uses prior knowledge (h2c).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tidings.channels import provider_http
from tidings.channels.base import OutgoingMessage, PermanentChannelError, TransientChannelError
from tidings.channels.push_common import (
    InvalidTokenError,
    check_payload_size,
    collapse_id,
    data_payload,
)
from tidings.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_LIFETIME = 50 * 60.0
# Stable namespace for apns-id: changing it would give retries of in-flight sends new ids.
APNS_ID_NAMESPACE = uuid.UUID("6f0d3c1e-2b1a-5d7e-9c4f-7a9e1b2c3d4e")
_DEAD_TOKEN_REASONS = {(410, "Unregistered"), (410, "ExpiredToken"), (400, "BadDeviceToken")}
_STALE_PROVIDER_TOKEN = "ExpiredProviderToken"


def load_apns_key(path: Path) -> EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"TIDINGS_APNS_KEY_FILE {path}: not a readable PEM private key: {e}"
        ) from e
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
        raise ValueError(f"TIDINGS_APNS_KEY_FILE {path}: not an EC P-256 key (.p8 from Apple)")
    return key


def apns_id(idempotency_key: str, token: str) -> str:
    return str(uuid.uuid5(APNS_ID_NAMESPACE, f"{idempotency_key}\n{token}"))


class ApnsClient:
    name = "APNs"

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        s = settings
        if not (s.apns_key_file and s.apns_key_id and s.apns_team_id and s.apns_topic):
            raise ValueError(
                "APNs needs TIDINGS_APNS_KEY_FILE, _KEY_ID, _TEAM_ID and _TOPIC all set"
            )
        self._key = load_apns_key(s.apns_key_file)
        self._key_id, self._team_id, self._topic = s.apns_key_id, s.apns_team_id, s.apns_topic
        self._base = settings.apns_base_url.rstrip("/")
        self._timeout = settings.apns_timeout_seconds
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(http1=False, http2=True, follow_redirects=False)
        self._jwt: str | None = None
        self._jwt_at = 0.0  # time.monotonic() when made

    def provider_token(self) -> str:
        now = time.monotonic()
        if self._jwt is None or now - self._jwt_at > TOKEN_LIFETIME:
            self._jwt = jwt.encode(
                {"iss": self._team_id, "iat": int(time.time())},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._jwt_at = now
        return self._jwt

    def payload(self, delivery: OutgoingMessage) -> dict[str, Any]:
        content = delivery.message
        alert = (
            {"title": content.subject, "body": content.text}
            if content.subject
            else {"body": content.text}
        )
        # Custom keys beside "aps" reach the app: the same ones FCM puts in "data".
        return {"aps": {"alert": alert}, **data_payload(delivery)}

    def headers(self, delivery: OutgoingMessage, token: str) -> dict[str, str]:
        headers = {
            "apns-topic": self._topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if delivery.priority.urgent else "5",
            "apns-collapse-id": collapse_id(delivery.notification_id),
            "apns-id": apns_id(delivery.idempotency_key, token),
        }
        # No header (rather than 0) when there is no expiry: 0 tells APNs to try once and
        # discard the notification if the device is offline.
        if delivery.expires_at is not None:
            headers["apns-expiration"] = str(max(1, int(delivery.expires_at.timestamp())))
        return headers

    async def send_to(self, delivery: OutgoingMessage, token: str) -> str:
        payload = self.payload(delivery)
        check_payload_size(self.name, payload)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self.headers(delivery, token)
        response = await self._post(token, body, headers)
        if response.status_code == 403 and self._reason(response) == _STALE_PROVIDER_TOKEN:
            self._jwt = None  # Apple thinks it is too old (clock skew): sign a new one, once
            response = await self._post(token, body, headers)
        return self._result(response, headers["apns-id"])

    async def _post(self, token: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await provider_http.request(
            self._http,
            self.name,
            "POST",
            f"{self._base}/3/device/{token}",
            timeout_seconds=self._timeout,
            content=body,
            headers={
                **headers,
                "authorization": f"bearer {self.provider_token()}",
                "content-type": "application/json",
            },
        )

    @staticmethod
    def _reason(response: httpx.Response) -> str | None:
        try:
            reason = json.loads(response.content).get("reason")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return None
        return reason if isinstance(reason, str) else None

    def _result(self, response: httpx.Response, sent_id: str) -> str:
        status = response.status_code
        if status == 200:
            return response.headers.get("apns-id") or sent_id
        reason = self._reason(response)
        if reason is None:
            # Without Apple's reason we cannot tell a dead token from a bad request.
            raise TransientChannelError(
                f"APNs answered {status} with a malformed body (no JSON reason):"
                f" {provider_http.snippet(response)!r}"
            )
        text = f"APNs answered {status} {reason}"
        if (status, reason) in _DEAD_TOKEN_REASONS:
            raise InvalidTokenError(text)
        if status == 429:
            raise provider_http.rate_limited(response, text)
        if status >= 500:
            raise TransientChannelError(text)
        raise PermanentChannelError(text)  # 403 auth problems, 413 too large, other 4xx

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
