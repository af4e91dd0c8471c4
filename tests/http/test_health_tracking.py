"""Health checks against live and dead backends, the body limit, and signed tracking links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from starter.client import Tidings
from starter.http import MAX_BODY_BYTES, make_open_pixel, make_tracking_link
from tests.http.helpers import WELCOME, api, error_of, eventually
from tests.ports import refused_port
from tests.support import Stack
from tidings import signing, tracking
from tidings.store import Store
from tidings.store.engine import create_engine
from workflows.connect import connect


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "temporal": "ok"}}


async def test_temporal_down_is_503_naming_temporal(stack: Stack) -> None:
    with refused_port() as port:
        await temporal_down_is_503_naming_temporal(stack, port)


async def temporal_down_is_503_naming_temporal(stack: Stack, port: int) -> None:
    settings = stack.settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    temporal = await connect(settings, lazy=True)
    async with api(Tidings(stack.settings, stack.store, temporal)) as client:
        r = await client.get("/healthz")
        error = error_of(r, 503, "unavailable")
        assert error["field"] == "temporal"
        assert r.json()["checks"]["database"] == "ok"
        assert r.json()["checks"]["temporal"].startswith("unreachable")
        # Requests that need Temporal say so instead of failing with a 500.
        request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}
        r = await client.post("/v1/notifications", json=request)
        assert error_of(r, 503, "unavailable")["field"] == "temporal"
        # Validation still happens first, against the store.
        r = await client.post("/v1/notifications", json={**request, "user_id": "nobody"})
        assert error_of(r, 422, "invalid_request")["field"] == "user_id"


async def test_database_down_is_503_naming_the_database(stack: Stack) -> None:
    with refused_port() as port:
        await database_down_is_503_naming_the_database(stack, port)


async def database_down_is_503_naming_the_database(stack: Stack, port: int) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
    store = Store(create_engine(url))
    try:
        async with api(
            Tidings(stack.settings, store, stack.tidings.temporal), issuer=stack.tidings
        ) as client:
            r = await client.get("/healthz")
            assert error_of(r, 503, "unavailable")["field"] == "database"
            assert r.json()["checks"]["temporal"] == "ok"
            r = await client.get("/v1/users/user_001")
            assert error_of(r, 503, "unavailable")["field"] == "database"
    finally:
        await store.close()


async def test_oversized_bodies_are_413(client: httpx.AsyncClient, stack: Stack) -> None:
    big = {"email": "big@example.com", "attributes": {"blob": "x" * MAX_BODY_BYTES}}
    r = await client.put("/v1/users/big", json=big)
    assert error_of(r, 413, "invalid_request")["field"] == "body"

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit has to count what arrives.
        yield b'{"email": "big@example.com", "attributes": {"blob": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}}'

    r = await client.put(
        "/v1/users/big", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert error_of(r, 413, "invalid_request")["field"] == "body"
    assert await stack.store.get_user("big") is None


async def _sent_in_app(client: httpx.AsyncClient, stack: Stack) -> str:
    request = {"user_id": "user_002", "template_id": "welcome", "data": WELCOME}
    r = await client.post("/v1/notifications", json={**request, "channels": ["in_app"]})
    nid: str = r.json()["notification_id"]
    await stack.tidings.wait_sent(nid)
    return nid


async def _engagement(client: httpx.AsyncClient, nid: str) -> list[dict[str, object]]:
    engagement: list[dict[str, object]] = (await client.get(f"/v1/notifications/{nid}")).json()[
        "engagement"
    ]
    return engagement


async def test_tracking_link_records_a_click_and_redirects(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    nid = await _sent_in_app(client, stack)
    target = "https://example.com/orders/42?utm=tidings"
    link = make_tracking_link(stack.settings, "http://test/", nid, target)
    assert link.startswith("http://test/t/")
    r = await client.get(link)
    assert r.status_code == 302
    assert r.headers["location"] == target

    async def clicked() -> bool:
        events = await _engagement(client, nid)
        return [(e["type"], e["metadata"]) for e in events] == [("clicked", {"url": target})]

    await eventually(clicked)

    pixel = await client.get(make_open_pixel(stack.settings, "http://test", nid))
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"

    async def opened() -> bool:
        return "opened" in [e["type"] for e in await _engagement(client, nid)]

    await eventually(opened)


async def test_tampered_or_foreign_tokens_are_400(client: httpx.AsyncClient, stack: Stack) -> None:
    link = make_tracking_link(stack.settings, "http://test", "n1", "https://example.com/")
    token = link.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    # Same signature, payload pointing elsewhere: the open-redirect attempt.
    evil = make_tracking_link(stack.settings, "http://test", "n1", "https://evil.example/")
    forged = f"{evil.rsplit('/', 1)[1].split('.')[0]}.{signature}"
    foreign = make_tracking_link(
        stack.settings.model_copy(update={"tracking_secret": SecretStr("another-secret")}),
        "http://test",
        "n1",
        "https://example.com/",
    ).rsplit("/", 1)[1]
    for bad in (forged, foreign, payload, "x" * 5000, f"{payload}.!!!"):
        r = await client.get(f"/t/{bad}")
        error = error_of(r, 400, "invalid_request")
        assert error["field"] == "token"
        assert "location" not in r.headers


async def test_click_before_delivery_still_redirects(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    # Unknown notification and one not yet delivered: the engagement is refused (NotFound,
    # Conflict) but the person clicking still gets where they were going.
    link = make_tracking_link(stack.settings, "http://test", "no-such-one", "https://example.com/")
    r = await client.get(link)
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/"


async def test_repeated_opens_and_clicks_count_once_per_link(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    nid = await _sent_in_app(client, stack)
    pixel = make_open_pixel(stack.settings, "http://test", nid)
    first = make_tracking_link(stack.settings, "http://test/", nid, "https://example.com/a")
    second = make_tracking_link(stack.settings, "http://test/", nid, "https://example.com/b")
    for url in [pixel, pixel, pixel, first, first, second]:
        assert (await client.get(url)).status_code in (200, 302)
    body = {"type": "converted", "event_id": "order-7"}
    for _ in range(2):
        r = await client.post(f"/v1/notifications/{nid}/engagement", json=body)
        assert r.status_code == 202, r.text

    async def counted() -> bool:
        kinds = sorted(str(e["type"]) for e in await _engagement(client, nid))
        return kinds == ["clicked", "clicked", "converted", "opened"]

    await eventually(counted)
    stats = (await client.get("/v1/stats")).json()
    assert stats["engagement"] == {"opened": 1, "clicked": 2, "converted": 1}


async def test_expired_and_non_http_links_are_404_without_a_redirect(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = make_tracking_link(
        stack.settings, "http://test", "n1", "https://example.com/", expires_at=past
    )
    r = await client.get(expired)
    assert "expired" in error_of(r, 404, "not_found")["reason"]
    assert "location" not in r.headers
    # A javascript: target signed with the (development) secret: refused at the redirect.
    secret = stack.settings.tracking_secret.get_secret_value()
    later = int((datetime.now(UTC) + timedelta(days=1)).timestamp())
    for target in ("javascript:alert(1)", "//evil.example/", "data:text/html,x"):
        payload = f"n1|clicked|email|{later}|{target}".encode()
        token = signing.seal(secret, tracking._CONTEXT, payload)
        r = await client.get(f"/t/{token}")
        error_of(r, 404, "not_found")
        assert "location" not in r.headers
