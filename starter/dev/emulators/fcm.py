"""An FCM HTTP v1 emulator: Google's OAuth2 token endpoint (jwt-bearer grant) and
`POST /v1/projects/{project}/messages:send`, with Google's error bodies.

A dead token answers 404 UNREGISTERED, or 400 INVALID_ARGUMENT when the fault says
`"error": "INVALID_ARGUMENT"`.

Assertions are verified (RS256, audience = the token URL, issuer, scope, lifetime) against the
public keys of trusted service-account keys; `dev_service_account(path)` writes such a key.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from starter.dev.emulators.base import Emulator, Received, Response

DEV_PROJECT = "tidings-dev"
DEV_CLIENT_EMAIL = f"tidings-dev@{DEV_PROJECT}.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
MAX_PAYLOAD = 4096
_SEND = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")

_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def dev_service_account(
    path: Path,
    *,
    project_id: str = DEV_PROJECT,
    token_uri: str = "http://127.0.0.1:8031/token",
    client_email: str = DEV_CLIENT_EMAIL,
) -> Path:
    """Write a service-account key file with a fresh RSA key, in Google's format."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)
    return path


def _google_error(status: int, state: str, message: str, code: str | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if code is not None:
        error["details"] = [{"@type": _FCM_ERROR, "errorCode": code}]
    return Response.json(status, {"error": error})


class FcmEmulator(Emulator):
    name = "FCM"
    default_port = 8031

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, token_lifetime: int = 3600
    ) -> None:
        super().__init__(host, port)
        self.token_lifetime = token_lifetime
        self._trusted: dict[str, RSAPublicKey] = {}  # client_email -> public key
        self._access: dict[str, float] = {}  # access token -> expiry (time.time())
        self.messages: list[dict[str, Any]] = []  # accepted messages, in order

    def trust_service_account(self, path: Path) -> None:
        document = json.loads(Path(path).read_text())
        key = serialization.load_pem_private_key(document["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: private_key is not RSA")
        self._trusted[document["client_email"]] = key.public_key()

    def expire_access_tokens(self) -> None:
        """Make every issued access token invalid, as a revocation would (next send gets 401)."""
        self._access.clear()

    def reset(self) -> None:
        super().reset()
        self.messages.clear()

    def is_api(self, req: Received) -> bool:
        return req.path != "/token"

    def server_error(self, status: int) -> Response:
        state = "UNAVAILABLE" if status == 503 else "INTERNAL"
        return _google_error(status, state, "The service is currently unavailable.", state)

    def rate_limited(self, retry_after: float | None) -> Response:
        resp = _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED")
        if retry_after is not None:
            resp.headers["retry-after"] = f"{retry_after:g}"
        return resp

    async def handle(self, req: Received) -> Response:
        if req.path == "/token" and req.method == "POST":
            return self._token(req)
        match = _SEND.match(req.path)
        if match and req.method == "POST":
            return self._send(req, match["project"])
        return _google_error(404, "NOT_FOUND", f"no such endpoint {req.method} {req.path}")

    def _token(self, req: Received) -> Response:
        form = req.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response.json(400, {"error": "unsupported_grant_type"})
        assertion = form.get("assertion", "")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            key = self._trusted.get(str(issuer))
            if key is None:
                return Response.json(
                    400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                )
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=f"http://{req.headers.get('host', '')}{req.path}",
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as e:
            return Response.json(400, {"error": "invalid_grant", "error_description": str(e)})
        if SCOPE not in str(claims["scope"]).split():
            return Response.json(400, {"error": "invalid_scope", "error_description": SCOPE})
        if claims["exp"] - claims["iat"] > 3600:
            return Response.json(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT: lifetime > 1h"}
            )
        token = "ya29.dev-" + secrets.token_urlsafe(24)
        self._access[token] = time.time() + self.token_lifetime
        return Response.json(
            200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _send(self, req: Received, project: str) -> Response:
        auth = req.headers.get("authorization", "")
        expiry = (
            self._access.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        )
        if expiry is None or expiry < time.time():
            return _google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        try:
            message = req.json()["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(token, str) or len(token) < 8:
            return _google_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        dead = self.dead_token(token)
        if dead is not None and dead.error == "INVALID_ARGUMENT":
            return _google_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        if dead is not None:
            return _google_error(
                404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"
            )
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return _google_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data'")
        priority = message.get("android", {}).get("priority", "NORMAL")
        if priority not in ("HIGH", "NORMAL"):
            return _google_error(
                400, "INVALID_ARGUMENT", "Invalid value at 'message.android.priority'"
            )
        size = len(
            json.dumps(
                {"notification": message.get("notification"), "data": data},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()
        )
        if size > MAX_PAYLOAD:
            return _google_error(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT")
        self.messages.append(message)
        return Response.json(200, {"name": f"projects/{project}/messages/0:{secrets.token_hex(8)}"})
