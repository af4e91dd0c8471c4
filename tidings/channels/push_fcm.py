"""Firebase Cloud Messaging, HTTP v1 API, authorised with a service-account key.

The access token comes from Google's OAuth2 token endpoint (the key's `token_uri`): an RS256 JWT
signed with the key's private key is exchanged for a bearer token (RFC 7523 jwt-bearer grant). It
is cached until a minute before it expires and refreshed by one caller at a time.

FCM has no idempotency key: a send retried after FCM accepted it but before we recorded that
reaches the device twice. `android.notification.tag` is the notification id, so the second copy
replaces the first on screen rather than stacking. No per-notification `collapse_key` is set: FCM
keeps at most four collapse keys per device, so unique keys would drop pending messages for a
device that is offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
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

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REFRESH_MARGIN = 60.0  # seconds before expiry at which a cached token is no longer used


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: RSAPrivateKey
    private_key_id: str | None
    token_uri: str
    project_id: str | None

    @classmethod
    def from_json(cls, text: str, source: str = "service-account key") -> ServiceAccount:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not JSON: {e}") from e
        if not isinstance(raw, dict) or raw.get("type") != "service_account":
            raise ValueError(
                f"{source} is not a service-account key (type must be service_account)"
            )
        for name in ("client_email", "private_key", "token_uri"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ValueError(f"{source} has no {name}")
        try:
            key = load_pem_private_key(raw["private_key"].encode(), password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source} private_key is not a PEM private key: {e}") from e
        if not isinstance(key, RSAPrivateKey):
            raise ValueError(f"{source} private_key is not an RSA key")
        return cls(
            client_email=raw["client_email"],
            private_key=key,
            private_key_id=raw.get("private_key_id") or None,
            token_uri=raw["token_uri"],
            project_id=raw.get("project_id") or None,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceAccount:
        if settings.fcm_service_account_json is not None:
            return cls.from_json(
                settings.fcm_service_account_json.get_secret_value(),
                "TIDINGS_FCM_SERVICE_ACCOUNT_JSON",
            )
        path = settings.fcm_service_account_file
        if path is None:
            raise ValueError("FCM needs TIDINGS_FCM_SERVICE_ACCOUNT_FILE or _JSON")
        return cls.from_json(Path(path).read_text(), f"service-account key {path}")

    def assertion(self, audience: str, now: float) -> str:
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


class _AccessTokens:
    def __init__(
        self, account: ServiceAccount, token_url: str, http: httpx.AsyncClient, timeout: float
    ) -> None:
        self._account = account
        self._url = token_url
        self._http = http
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires = 0.0  # time.monotonic()

    def _cached(self) -> str | None:
        if self._token and time.monotonic() < self._expires - _REFRESH_MARGIN:
            return self._token
        return None

    async def get(self) -> str:
        token = self._cached()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have refreshed it already.
            token = self._cached()
            if token is None:
                token = await self._fetch()
            return token

    def invalidate(self, token: str) -> None:
        if self._token == token:  # not one a concurrent refresh has just replaced
            self._token = None

    async def _fetch(self) -> str:
        what = "FCM OAuth token endpoint"
        response = await provider_http.request(
            self._http,
            what,
            "POST",
            self._url,
            timeout_seconds=self._timeout,
            data={
                "grant_type": JWT_BEARER,
                "assertion": self._account.assertion(self._url, time.time()),
            },
        )
        status = response.status_code
        if status == 429:
            raise provider_http.rate_limited(response, f"{what} answered 429")
        if status >= 500:
            raise TransientChannelError(f"{what} answered {status}")
        body = provider_http.json_object(response, what)
        if status != 200:
            # invalid_grant / invalid_client: the key is revoked, disabled or not trusted.
            detail = f"{body.get('error', '?')}: {body.get('error_description', '')}".strip()
            raise PermanentChannelError(
                f"{what} refused the service-account key ({status} {detail})"
            )
        token, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise TransientChannelError(
                f"{what} answered 200 without access_token/expires_in:"
                f" {provider_http.snippet(response)!r}"
            )
        self._token, self._expires = token, time.monotonic() + float(expires_in)
        logger.info("FCM access token refreshed, valid %ss", expires_in)
        return token


def _fcm_error(response: httpx.Response) -> tuple[str, str, str]:
    """(status, errorCode, message) from Google's error body; empty strings where absent."""
    try:
        error = json.loads(response.content).get("error", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return "", "", provider_http.snippet(response)
    if not isinstance(error, dict):
        return "", "", provider_http.snippet(response)
    code = ""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            code = str(detail.get("errorCode", ""))
    return str(error.get("status", "")), code, str(error.get("message", ""))


class FcmClient:
    name = "FCM"

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._account = ServiceAccount.from_settings(settings)
        project = settings.fcm_project_id or self._account.project_id
        if not project:
            raise ValueError("FCM needs TIDINGS_FCM_PROJECT_ID (the key has no project_id)")
        self._url = f"{settings.fcm_base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._http = http
        self._timeout = settings.fcm_timeout_seconds
        self._tokens = _AccessTokens(
            self._account, settings.fcm_token_url or self._account.token_uri, http, self._timeout
        )

    def message(self, delivery: OutgoingMessage, token: str) -> dict[str, Any]:
        content = delivery.message
        # The title is optional in templates; an empty one is left out, not shown blank.
        notification = {"title": content.subject} if content.subject else {}
        notification["body"] = content.text
        android: dict[str, Any] = {
            "priority": "HIGH" if delivery.priority.urgent else "NORMAL",
            "notification": {"tag": collapse_id(delivery.notification_id)},
        }
        if delivery.expires_at is not None:
            seconds = (delivery.expires_at - datetime.now(UTC)).total_seconds()
            android["ttl"] = f"{max(0, int(seconds))}s"
        return {
            "token": token,
            "notification": notification,
            # FCM requires every data value to be a string.
            "data": data_payload(delivery),
            "android": android,
        }

    async def send_to(self, delivery: OutgoingMessage, token: str) -> str:
        message = self.message(delivery, token)
        check_payload_size(
            self.name, {"notification": message["notification"], "data": message["data"]}
        )
        body = {"message": message}
        response = await self._post(body)
        if response.status_code == 401:
            # The cached token was revoked or expired early: one fresh token, one more try.
            response = await self._post(body)
            if response.status_code == 401:
                raise TransientChannelError(
                    "FCM answered 401 twice, even with a fresh access token"
                )
        return self._result(response)

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        access = await self._tokens.get()
        response = await provider_http.request(
            self._http,
            self.name,
            "POST",
            self._url,
            timeout_seconds=self._timeout,
            json=body,
            headers={"authorization": f"Bearer {access}"},
        )
        if response.status_code == 401:
            self._tokens.invalidate(access)
        return response

    def _result(self, response: httpx.Response) -> str:
        status = response.status_code
        if status == 200:
            name = provider_http.json_object(response, self.name).get("name")
            if not isinstance(name, str) or not name:
                raise TransientChannelError(
                    f"FCM answered 200 without a message name: {provider_http.snippet(response)!r}"
                )
            return name
        error_status, code, message = _fcm_error(response)
        reason = f"FCM answered {status} {code or error_status}: {message}".rstrip(": ")
        if status == 404 and (code == "UNREGISTERED" or error_status == "NOT_FOUND"):
            raise InvalidTokenError(reason)
        if (
            status == 400
            and "INVALID_ARGUMENT" in (code, error_status)
            and "token" in message.lower()
        ):
            raise InvalidTokenError(reason)
        if status == 429 or (status == 503 and "retry-after" in response.headers):
            raise provider_http.rate_limited(response, reason)
        if status >= 500 or status == 408:
            raise TransientChannelError(reason)
        raise PermanentChannelError(reason)

    async def aclose(self) -> None:
        return None  # the http client is shared and owned by the caller
