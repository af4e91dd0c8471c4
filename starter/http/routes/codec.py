"""The codec endpoint for the Temporal Web UI and CLI: `POST /codec/decode` and `/codec/encode`.

The Web UI posts `{"payloads": [{"metadata": {...base64...}, "data": "...base64..."}]}` (the
protobuf JSON of `Payloads`) with `Content-Type: application/json` and `X-Namespace`, from its
own origin, so the answers carry CORS headers for the allowed origins (TIDINGS_CODEC_CORS_ORIGINS,
by default the origin of TIDINGS_TEMPORAL_UI_URL) and preflight requests are answered.

Authenticated: `Authorization: Bearer <API key>` (read scope to decode, admin to encode), as the
`temporal` CLI sends with `--codec-auth` and the UI with its access token. A browser on the dev
server's UI cannot add a header, so the key may also sit in the path, `/codec/<key>/decode`: give
the UI `--ui-codec-endpoint http://host:port/codec/<key>` (`tidings dev` does this with its
development key). uvicorn's access log shows such paths as /codec/***/decode; a proxy in front
may log them as they are, so give the UI a key of its own, revocable on its own.
"""

from __future__ import annotations

import base64
import logging
import re
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from starter.http.auth import Credentials, api_key_with_scope
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.errors import InvalidRequest
from tidings.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])
_KEY_IN_PATH = re.compile(r"/codec/[^/\s\"]+/(decode|encode)")


class RedactKeyInPath(logging.Filter):
    """Access logs (uvicorn.access) show /codec/***/decode, never the key in the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _KEY_IN_PATH.sub(r"/codec/***/\1", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeyInPath) for f in access.filters):
        access.addFilter(RedactKeyInPath())


MAX_PAYLOADS = 1000
_ALLOWED_HEADERS = "content-type, x-namespace, authorization"


class CodecPayload(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="base64 values")
    data: str = Field(default="", description="base64")


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload] = Field(default_factory=list, max_length=MAX_PAYLOADS)


def allowed_origins(settings: Settings) -> set[str]:
    if settings.codec_cors_origins:
        return {o.rstrip("/") for o in settings.codec_cors_origins}
    ui = urlsplit(settings.temporal_ui_url)
    origins = {f"{ui.scheme}://{ui.netloc}"}
    if ui.hostname == "localhost":  # the same UI opened as 127.0.0.1
        origins.add(f"{ui.scheme}://{ui.netloc.replace('localhost', '127.0.0.1')}")
    return origins


def _cors(request: Request, response: Response, settings: Settings) -> None:
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") in allowed_origins(settings):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        if request.headers.get("access-control-request-private-network") == "true":
            response.headers["Access-Control-Allow-Private-Network"] = "true"
    response.headers["Vary"] = "Origin"


def _to_protos(body: CodecPayloads) -> list[Payload]:
    try:
        return [
            Payload(
                metadata={k: base64.b64decode(v, validate=True) for k, v in p.metadata.items()},
                data=base64.b64decode(p.data, validate=True),
            )
            for p in body.payloads
        ]
    except ValueError as e:  # binascii.Error, or characters outside ASCII
        raise InvalidRequest("payloads", "metadata values and data must be base64") from e


def _from_protos(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads(
        payloads=[
            CodecPayload(
                metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                data=base64.b64encode(p.data).decode(),
            )
            for p in payloads
        ]
    )


async def _run(
    direction: str, body: CodecPayloads, request: Request, response: Response, tidings: Api
) -> CodecPayloads:
    codec = tidings.temporal.data_converter.payload_codec
    payloads = _to_protos(body)
    if codec is not None:
        try:
            if direction == "decode":
                payloads = await codec.decode(payloads)
            else:
                payloads = await codec.encode(payloads)
        except ValueError as e:  # unknown key id, failed authentication
            raise InvalidRequest("payloads", str(e)) from e
    _cors(request, response, tidings.settings)
    return _from_protos(payloads)


async def _check(request: Request, credential: str | None, direction: str) -> None:
    scope = Scope.READ if direction == "decode" else Scope.ADMIN
    await api_key_with_scope(request, credential, scope)


def _bearer(credentials: Credentials) -> str | None:
    return credentials.credentials if credentials is not None else None


@router.post(
    "/decode",
    summary="Decrypt payloads (Temporal Web UI / CLI codec)",
    response_model=CodecPayloads,
)
async def decode(
    body: CodecPayloads, request: Request, response: Response, tidings: Api, auth: Credentials
) -> CodecPayloads:
    await _check(request, _bearer(auth), "decode")
    return await _run("decode", body, request, response, tidings)


@router.post(
    "/encode", summary="Encrypt payloads (Web UI / CLI codec)", response_model=CodecPayloads
)
async def encode(
    body: CodecPayloads, request: Request, response: Response, tidings: Api, auth: Credentials
) -> CodecPayloads:
    await _check(request, _bearer(auth), "encode")
    return await _run("encode", body, request, response, tidings)


@router.post("/{key}/decode", response_model=CodecPayloads, include_in_schema=False)
async def decode_keyed(
    key: str, body: CodecPayloads, request: Request, response: Response, tidings: Api
) -> CodecPayloads:
    await _check(request, key, "decode")
    return await _run("decode", body, request, response, tidings)


@router.post("/{key}/encode", response_model=CodecPayloads, include_in_schema=False)
async def encode_keyed(
    key: str, body: CodecPayloads, request: Request, response: Response, tidings: Api
) -> CodecPayloads:
    await _check(request, key, "encode")
    return await _run("encode", body, request, response, tidings)


@router.options("/{rest:path}", include_in_schema=False)
async def preflight(request: Request, tidings: Api) -> Response:
    response = Response(status_code=204)
    _cors(request, response, tidings.settings)
    return response
