"""The codec endpoint as the Temporal Web UI calls it: CORS preflight from the UI's origin,
`{"payloads": [...]}` in protobuf JSON, and a key (header, or path for the dev server's UI)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from starter.client import Tidings
from starter.http import create_app
from starter.http.routes.codec import RedactKeyInPath
from tests.http.helpers import error_of
from tests.support import Stack
from tidings.api_keys import Scope
from tidings.models import Channel, RenderedMessage
from tidings.payload_keys import new_key_entry, parse_keys
from workflows.converter import with_keys

UI = "http://localhost:8233"
SECRET_TEXT = "Parcel for Grace Hopper, 1 Harbour St"


@pytest_asyncio.fixture(loop_scope="session")
async def keyed(stack: Stack) -> AsyncIterator[tuple[Tidings, httpx.AsyncClient]]:
    base = stack.tidings.temporal
    temporal = Client(
        base.service_client,
        namespace=base.namespace,
        data_converter=with_keys(parse_keys(new_key_entry("ui"))),
    )
    settings = stack.settings.model_copy(update={"temporal_ui_url": UI})
    tidings = Tidings(settings, stack.store, temporal)
    transport = httpx.ASGITransport(app=create_app(tidings=tidings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield tidings, client


def _wire(payloads: list[Payload]) -> dict[str, object]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


async def test_the_web_ui_decodes_through_the_endpoint(
    keyed: tuple[Tidings, httpx.AsyncClient],
) -> None:
    tidings, client = keyed
    message = RenderedMessage(channel=Channel.EMAIL, subject="Hi", text=SECRET_TEXT)
    encrypted = await tidings.temporal.data_converter.encode([message])
    assert SECRET_TEXT.encode() not in encrypted[0].SerializeToString()
    key = (await tidings.create_api_key("web ui", [Scope.READ])).key

    preflight = await client.options(
        "/codec/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in preflight.headers["access-control-allow-headers"]
    assert "POST" in preflight.headers["access-control-allow-methods"]

    headers = {"Origin": UI, "X-Namespace": "default", "Authorization": f"Bearer {key}"}
    r = await client.post("/codec/decode", json=_wire(encrypted), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == UI
    [payload] = r.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(payload["data"]))["text"] == SECRET_TEXT

    # The dev server's UI cannot send a header: the key in the path does the same.
    r = await client.post(f"/codec/{key}/decode", json=_wire(encrypted), headers={"Origin": UI})
    assert r.status_code == 200 and r.json() == {"payloads": [payload]}


async def test_encode_then_decode_round_trips(keyed: tuple[Tidings, httpx.AsyncClient]) -> None:
    tidings, client = keyed
    admin = {"Authorization": f"Bearer {(await tidings.create_api_key('ops', [Scope.ADMIN])).key}"}
    body = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": base64.b64encode(b'"hello"').decode()}]}  # fmt: skip
    encoded = await client.post("/codec/encode", json=body, headers=admin)
    assert encoded.status_code == 200, encoded.text
    assert b"hello" not in base64.b64decode(encoded.json()["payloads"][0]["data"])
    decoded = await client.post("/codec/decode", json=encoded.json(), headers=admin)
    assert decoded.json() == body


async def test_the_endpoint_is_authenticated(keyed: tuple[Tidings, httpx.AsyncClient]) -> None:
    tidings, client = keyed
    body: dict[str, list[object]] = {"payloads": []}
    sender = (await tidings.create_api_key("sender", [Scope.SEND])).key
    reader = (await tidings.create_api_key("reader", [Scope.READ])).key
    error_of(await client.post("/codec/decode", json=body), 401, "unauthorized")
    error_of(await client.post("/codec/not-a-key/decode", json=body), 401, "unauthorized")
    r = await client.post("/codec/decode", json=body, headers={"Authorization": f"Bearer {sender}"})
    error_of(r, 403, "forbidden")
    r = await client.post("/codec/encode", json=body, headers={"Authorization": f"Bearer {reader}"})
    error_of(r, 403, "forbidden")


async def test_other_origins_get_no_cors_grant(keyed: tuple[Tidings, httpx.AsyncClient]) -> None:
    _, client = keyed
    r = await client.options(
        "/codec/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_access_logs_never_show_a_key_in_the_path() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/codec/tid_0123456789abcdef_s3cr3t/decode", "1.1", 200), None,
    )  # fmt: skip
    assert RedactKeyInPath().filter(record)
    assert "s3cr3t" not in record.getMessage()
    assert "/codec/***/decode" in record.getMessage()
