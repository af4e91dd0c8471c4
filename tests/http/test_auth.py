"""Who may call what: every /v1 route needs a key with its scope (walked over app.routes, so a
new route without a declared scope fails here), the 401 bodies say nothing about whether a key
exists, revocation holds at once, and inbox tokens open one user's inbox only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute

from starter.http import create_app
from starter.http.app import V1_MODULES
from starter.http.auth import required_scope
from tests.http.helpers import api, error_of
from tests.support import Stack
from tidings import inbox_tokens
from tidings.api_keys import Scope

# Routes under /v1 that authenticate the caller by a signature of their own (providers).
SIGNED_ELSEWHERE = {"/v1/receipts", "/v1/receipts/twilio"}
# Routes outside /v1, each with its own rule: health, signed tracking tokens, the docs.
OUTSIDE_V1 = {
    "/healthz",
    "/t/{token}",
    "/u/{token}",  # signed unsubscribe tokens, tests/http/test_unsubscribe.py
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/codec/decode",  # an API key (read), tests/http/test_codec_endpoint.py
    "/codec/encode",  # an API key (admin)
    "/inbox",  # a static page; its script calls /v1 with an inbox token
}
PATH_VALUES = {
    "user_id": "user_001",
    "item_id": "1",
    "key_id": "0123456789abcdef",
    "platform": "fcm",
    "token": "device-token",
    "notification_id": "no-such-notification",
    "template_id": "welcome",
    "experiment_id": "no-such-experiment",
    "segment": "no-such-segment",
    "broadcast_id": "no-such-broadcast",
    "bulk_id": "no-such-bulk",
    "key": "no-such-digest",
    "schedule_id": "no-such-schedule",
}
# A key that may not do what the route needs, for each scope a route can need.
WRONG = {
    Scope.READ: [Scope.SEND],
    Scope.SEND: [Scope.READ],
    Scope.ADMIN: [Scope.SEND, Scope.READ],
}


def _operations() -> list[tuple[str, str]]:
    """Every operation the app serves, from its OpenAPI schema (which FastAPI builds from
    app.routes, nested routers included)."""
    paths = create_app().openapi()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


OPERATIONS = _operations()
V1 = [(m, p) for m, p in OPERATIONS if p.startswith("/v1") and p not in SIGNED_ELSEWHERE]
# The scope each route needs: a new /v1 route fails below until it is listed here.
SCOPES = {
    ("PUT", "/v1/users/{user_id}"): Scope.ADMIN,
    ("DELETE", "/v1/users/{user_id}"): Scope.ADMIN,
    ("GET", "/v1/users/{user_id}"): Scope.READ,
    ("GET", "/v1/users"): Scope.READ,
    ("PUT", "/v1/users/{user_id}/preferences"): Scope.ADMIN,
    ("GET", "/v1/users/{user_id}/preferences"): Scope.READ,
    ("POST", "/v1/users/{user_id}/inbox-token"): Scope.SEND,
    ("POST", "/v1/users/{user_id}/devices"): Scope.ADMIN,
    ("DELETE", "/v1/devices/{platform}/{token}"): Scope.ADMIN,
    ("POST", "/v1/templates"): Scope.ADMIN,
    ("GET", "/v1/templates"): Scope.READ,
    ("GET", "/v1/templates/{template_id}"): Scope.READ,
    ("POST", "/v1/notifications"): Scope.SEND,
    ("POST", "/v1/notifications/bulk"): Scope.SEND,
    ("GET", "/v1/bulks/{bulk_id}"): Scope.READ,
    ("GET", "/v1/notifications/{notification_id}"): Scope.READ,
    ("POST", "/v1/notifications/{notification_id}/cancel"): Scope.SEND,
    ("POST", "/v1/notifications/{notification_id}/reschedule"): Scope.SEND,
    ("POST", "/v1/notifications/{notification_id}/engagement"): Scope.SEND,
    ("POST", "/v1/notifications/{notification_id}/events"): Scope.SEND,
    ("GET", "/v1/users/{user_id}/inbox"): Scope.READ,
    ("POST", "/v1/users/{user_id}/inbox/{item_id}/read"): Scope.SEND,
    ("POST", "/v1/users/{user_id}/inbox/read-all"): Scope.SEND,
    ("GET", "/v1/users/{user_id}/inbox/items"): Scope.READ,
    ("GET", "/v1/users/{user_id}/inbox/counts"): Scope.READ,
    ("POST", "/v1/users/{user_id}/inbox/mark"): Scope.SEND,
    ("GET", "/v1/users/{user_id}/inbox/stream"): Scope.READ,
    ("GET", "/v1/stats"): Scope.READ,
    ("POST", "/v1/experiments"): Scope.ADMIN,
    ("GET", "/v1/experiments"): Scope.READ,
    ("GET", "/v1/experiments/{experiment_id}"): Scope.READ,
    ("POST", "/v1/experiments/{experiment_id}/enrollments"): Scope.SEND,
    ("POST", "/v1/experiments/{experiment_id}/stop"): Scope.ADMIN,
    ("POST", "/v1/broadcasts"): Scope.SEND,
    ("GET", "/v1/broadcasts"): Scope.READ,
    ("GET", "/v1/broadcasts/{broadcast_id}"): Scope.READ,
    ("POST", "/v1/broadcasts/{broadcast_id}/pause"): Scope.SEND,
    ("POST", "/v1/broadcasts/{broadcast_id}/resume"): Scope.SEND,
    ("POST", "/v1/broadcasts/{broadcast_id}/cancel"): Scope.SEND,
    ("POST", "/v1/api-keys"): Scope.ADMIN,
    ("GET", "/v1/api-keys"): Scope.ADMIN,
    ("DELETE", "/v1/api-keys/{key_id}"): Scope.ADMIN,
    ("GET", "/v1/analytics/metrics"): Scope.READ,
    ("GET", "/v1/analytics/templates"): Scope.READ,
    ("GET", "/v1/analytics/channels"): Scope.READ,
    ("GET", "/v1/analytics/providers"): Scope.READ,
    ("GET", "/v1/analytics/users/{user_id}"): Scope.READ,
    ("POST", "/v1/segments"): Scope.ADMIN,
    ("GET", "/v1/segments"): Scope.READ,
    ("GET", "/v1/segments/{segment}"): Scope.READ,
    ("GET", "/v1/segments/{segment}/members"): Scope.READ,
    ("DELETE", "/v1/segments/{segment}"): Scope.ADMIN,
    ("PUT", "/v1/digests/{key}"): Scope.ADMIN,
    ("GET", "/v1/digests"): Scope.READ,
    ("GET", "/v1/digests/{key}"): Scope.READ,
    ("POST", "/v1/digests/{key}/events"): Scope.SEND,
    ("POST", "/v1/digests/{key}/users/{user_id}/flush"): Scope.SEND,
    ("GET", "/v1/digests/{key}/users/{user_id}"): Scope.READ,
    ("POST", "/v1/schedules"): Scope.ADMIN,
    ("GET", "/v1/schedules"): Scope.READ,
    ("GET", "/v1/schedules/{schedule_id}"): Scope.READ,
    ("POST", "/v1/schedules/{schedule_id}/pause"): Scope.ADMIN,
    ("POST", "/v1/schedules/{schedule_id}/resume"): Scope.ADMIN,
    ("POST", "/v1/schedules/{schedule_id}/trigger"): Scope.ADMIN,
    ("DELETE", "/v1/schedules/{schedule_id}"): Scope.ADMIN,
}


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def test_every_route_has_a_rule() -> None:
    for method, path in OPERATIONS:
        if path.startswith("/v1"):
            assert path in SIGNED_ELSEWHERE or (method, path) in SCOPES, (
                f"{method} {path}: add dependencies=[Requires(Scope...)] and list it in SCOPES"
            )
        else:
            assert path in OUTSIDE_V1, f"{path} is a new route outside /v1: give it a rule"
    # The routes themselves declare what the table says (the table is not the only guard).
    v1_routes = [r for m in V1_MODULES for r in m.router.routes if isinstance(r, APIRoute)]
    declared = {}
    for route in v1_routes:
        rule = next(
            (
                required_scope(d.call)
                for d in route.dependant.dependencies
                if required_scope(d.call)
            ),
            None,
        )
        path = "/v1" + route.path.replace("{token:path}", "{token}")
        for method in route.methods or ():
            declared[(method, path)] = None if rule is None else rule[0]
    assert {k: v for k, v in declared.items() if "/receipts" not in k[1]} == SCOPES


@pytest_asyncio.fixture(loop_scope="session")
async def anonymous(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(tidings=stack.tidings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _call(
    client: httpx.AsyncClient, method: str, path: str, key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if path.endswith("/inbox/stream"):
        # Authorised, the stream would never end; a bad Last-Event-ID is refused (422) after
        # the credentials are checked, which is what this test looks at.
        headers["Last-Event-ID"] = "not-an-id"
    body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
    return await client.request(method, _concrete(path), json=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), V1, ids=[f"{m} {p}" for m, p in V1])
async def test_route_refuses_callers_without_the_scope(
    stack: Stack, anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    scope = SCOPES[(method, path)]
    revoked = await stack.tidings.create_api_key("revoked", [Scope.ADMIN])
    await stack.tidings.revoke_api_key(revoked.api_key.id)
    live = await stack.tidings.create_api_key("live", [Scope.ADMIN])
    unknown_id = "tid_" + "0" * 16 + "_" + live.key.removeprefix(f"tid_{live.api_key.id}_")
    forged = live.key[:-4] + ("AAAA" if not live.key.endswith("AAAA") else "BBBB")
    bodies = []
    for key in (None, "", "not-a-key", unknown_id, forged, revoked.key):
        r = await _call(anonymous, method, path, key)
        error = error_of(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        bodies.append(error)
    # One answer for missing, malformed, unknown, wrong-secret and revoked keys.
    assert all(b == bodies[0] for b in bodies)
    for scopes in WRONG[scope]:
        narrow = await stack.tidings.create_api_key("narrow", [scopes])
        r = await _call(anonymous, method, path, narrow.key)
        assert scope.value in error_of(r, 403, "forbidden")["reason"]
    allowed = await stack.tidings.create_api_key("allowed", [scope])
    r = await _call(anonymous, method, path, allowed.key)
    assert r.status_code not in (401, 403), r.text


async def test_revocation_holds_from_the_next_request(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    r = await client.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    created = r.json()
    key, key_id = created["key"], created["api_key"]["id"]
    assert key.startswith(f"tid_{key_id}_") and created["api_key"]["scopes"] == ["read"]
    headers = {"Authorization": f"Bearer {key}"}
    assert (await anonymous.get("/v1/users", headers=headers)).status_code == 200
    listed = (await client.get("/v1/api-keys")).json()
    assert key_id in [k["id"] for k in listed]
    assert all("key" not in k and "digest" not in k for k in listed)
    assert (await client.delete(f"/v1/api-keys/{key_id}")).status_code == 204
    error_of(await anonymous.get("/v1/users", headers=headers), 401, "unauthorized")
    assert [k["revoked_at"] for k in (await client.get("/v1/api-keys")).json() if k["id"] == key_id]


async def test_keys_are_stored_only_as_a_digest(stack: Stack) -> None:
    created = await stack.tidings.create_api_key("digest", [Scope.SEND])
    found = await stack.store.api_key_with_digest(created.api_key.id)
    assert found is not None
    assert created.key not in found[1] and len(found[1]) == 64
    assert (
        len(created.key.removeprefix(f"tid_{created.api_key.id}_")) >= 43
    )  # 256 bits in base64url


async def test_creating_a_key_needs_a_name_and_a_scope(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/api-keys", json={"name": "x", "scopes": []})
    assert error_of(r, 422, "invalid_request")["field"] == "scopes"
    r = await client.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]})
    assert error_of(r, 422, "invalid_request")["field"].startswith("scopes")


async def test_inbox_tokens_open_one_users_inbox(
    stack: Stack, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    r = await client.post("/v1/users/user_001/inbox-token", json={"ttl_seconds": 600})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)
    mine = {"Authorization": f"Bearer {token}"}
    assert (await anonymous.get("/v1/users/user_001/inbox", headers=mine)).status_code == 200
    r = await anonymous.post("/v1/users/user_001/inbox/read-all", headers=mine)
    assert r.status_code == 200
    # Another user's inbox, and anything that is not an inbox.
    error_of(await anonymous.get("/v1/users/user_002/inbox", headers=mine), 403, "forbidden")
    r = await anonymous.post("/v1/users/user_002/inbox/read-all", headers=mine)
    error_of(r, 403, "forbidden")
    error_of(await anonymous.get("/v1/users/user_001", headers=mine), 401, "unauthorized")
    # Expired, tampered with, or signed with another secret.
    secret = stack.settings.inbox_secret.get_secret_value()
    expired = inbox_tokens.mint(secret, "user_001", datetime.now(UTC) - timedelta(seconds=1))
    payload, signature = token.removeprefix(inbox_tokens.PREFIX).split(".")
    other = inbox_tokens.mint(secret, "user_002", expires)
    spliced = token.split(".")[0] + "." + other.split(".")[1]
    foreign = inbox_tokens.mint("another-secret", "user_001", expires)
    flipped = inbox_tokens.PREFIX + payload + "." + signature[::-1]
    for bad in (expired, spliced, foreign, flipped, inbox_tokens.PREFIX + "garbage"):
        r = await anonymous.get(
            "/v1/users/user_001/inbox", headers={"Authorization": f"Bearer {bad}"}
        )
        error_of(r, 401, "unauthorized")


async def test_inbox_token_bounds(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/users/user_001/inbox-token", json={"ttl_seconds": 0})
    assert error_of(r, 422, "invalid_request")["field"] == "ttl_seconds"
    r = await client.post("/v1/users/nobody/inbox-token")
    error_of(r, 404, "not_found")
    r = await client.post("/v1/users/user_001/inbox-token")
    assert r.status_code == 201


async def test_a_send_key_mints_inbox_tokens(stack: Stack) -> None:
    async with api(stack.tidings, scopes=[Scope.SEND]) as sender:
        assert (await sender.post("/v1/users/user_001/inbox-token")).status_code == 201
        error_of(await sender.get("/v1/users"), 403, "forbidden")
