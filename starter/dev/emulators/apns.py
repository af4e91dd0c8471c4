"""An APNs emulator: `POST /3/device/{token}` over HTTP/2 (h2c), token-based authentication.

The bearer JWT is verified (ES256, `kid` of a trusted key, `iss` = its team id, `iat` within the
last hour) and the request headers and payload are checked as APNs does, answering Apple's
`{"reason": ...}` errors. `dev_apns_key(path)` writes a .p8 key to trust.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from starter.dev.emulators.base import Emulator, Received, Response

MAX_PAYLOAD = 4096
_DEVICE = re.compile(r"^/3/device/(?P<token>[^/]+)$")
_HEX_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
PUSH_TYPES = frozenset({"alert", "background", "voip", "complication", "fileprovider", "mdm"})


def dev_apns_key(path: Path) -> Path:
    """Write a fresh EC P-256 private key as a PKCS#8 PEM file, the format of Apple's .p8."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Accepted:
    token: str
    apns_id: str
    headers: dict[str, str]
    payload: dict[str, Any]


def _reason(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"reason": reason}
    if status == 410:
        body["timestamp"] = int(time.time() * 1000)
    return Response.json(status, body, headers)


class ApnsEmulator(Emulator):
    name = "APNs"
    default_port = 8032
    http2 = True

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__(host, port)
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}  # kid -> (team, key)
        self.topics: set[str] | None = None  # None: any topic
        self.accepted: list[Accepted] = []

    def trust_key(self, key_id: str, team_id: str, path: Path) -> None:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an EC private key")
        self._keys[key_id] = (team_id, key.public_key())

    def reset(self) -> None:
        super().reset()
        self.accepted.clear()

    def server_error(self, status: int) -> Response:
        return _reason(status, "ServiceUnavailable" if status == 503 else "InternalServerError")

    def rate_limited(self, retry_after: float | None) -> Response:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return _reason(429, "TooManyRequests", headers)

    def malformed(self) -> Response:
        # APNs answers errors with a JSON reason; a proxy in the way answers HTML.
        return Response(502, b"<html>Bad Gateway</html>", {"content-type": "text/html"})

    def _auth_error(self, req: Received) -> str | None:
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return "MissingProviderToken"
        token = auth[7:]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            team, key = self._keys[str(kid)]
            claims = jwt.decode(
                token, key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
        except (jwt.PyJWTError, KeyError):
            return "InvalidProviderToken"
        if claims["iss"] != team:
            return "InvalidProviderToken"
        if time.time() - float(claims["iat"]) > 3600:
            return "ExpiredProviderToken"
        return None

    async def handle(self, req: Received) -> Response:
        match = _DEVICE.match(req.path)
        if req.method != "POST":
            return _reason(405, "MethodNotAllowed")
        if match is None:
            return _reason(404, "BadPath")
        auth_error = self._auth_error(req)
        if auth_error is not None:
            return _reason(403, auth_error)
        h = req.headers
        topic = h.get("apns-topic")
        if not topic:
            return _reason(400, "MissingTopic")
        if self.topics is not None and topic not in self.topics:
            return _reason(400, "TopicDisallowed")
        if h.get("apns-push-type", "alert") not in PUSH_TYPES:
            return _reason(400, "InvalidPushType")
        if h.get("apns-priority", "10") not in ("1", "5", "10"):
            return _reason(400, "BadPriority")
        if not h.get("apns-expiration", "0").isdigit():
            return _reason(400, "BadExpirationDate")
        if len(h.get("apns-collapse-id", "").encode()) > 64:
            return _reason(400, "BadCollapseId")
        apns_id = h.get("apns-id") or str(uuid.uuid4())
        try:
            uuid.UUID(apns_id)
        except ValueError:
            return _reason(400, "BadMessageId")
        token = match["token"]
        if not _HEX_TOKEN.match(token):
            return _reason(400, "BadDeviceToken")
        if self.dead_token(token) is not None:
            return _reason(410, "Unregistered")
        if len(req.body) > MAX_PAYLOAD:
            return _reason(413, "PayloadTooLarge")
        try:
            payload = json.loads(req.body)
        except ValueError:
            return _reason(400, "PayloadEmpty")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return _reason(400, "PayloadEmpty")
        self.accepted.append(Accepted(token=token, apns_id=apns_id, headers=h, payload=payload))
        return Response(200, b"", {"apns-id": apns_id})
