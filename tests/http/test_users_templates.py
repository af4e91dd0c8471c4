"""Users, devices, preferences and templates over HTTP, and the one error shape."""

from __future__ import annotations

import httpx
import pytest

from starter.http import app
from tests.http.helpers import error_of
from tests.support import Stack


async def test_user_upsert_round_trips(client: httpx.AsyncClient) -> None:
    body = {"email": "ada@example.com", "phone": "+44 20 7946 0958", "timezone": "Europe/London"}
    r = await client.put("/v1/users/ada", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "ada"
    assert r.json()["phone"] == "+442079460958"  # normalised to E.164
    got = (await client.get("/v1/users/ada")).json()
    assert got["email"] == "ada@example.com" and got["timezone"] == "Europe/London"
    r = await client.put("/v1/users/ada", json={**body, "id": "ada", "locale": "fr"})
    assert r.status_code == 200 and r.json()["locale"] == "fr"
    ids = [u["id"] for u in (await client.get("/v1/users", params={"limit": 10})).json()]
    assert "ada" in ids and "user_001" in ids


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"email": "not-an-email"}, "email", "valid email address"),
        ({"phone": "12345"}, "phone", "E.164"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown IANA timezone"),
        ({"webhook_url": "ftp://example.com"}, "webhook_url", "URL scheme"),
        ({"nickname": "x"}, "nickname", "Extra inputs"),
        ({"id": "someone_else"}, "id", "differs from 'bad_user'"),
    ],
)
async def test_bad_user_fields_are_named(
    client: httpx.AsyncClient, body: dict[str, str], field: str, reason: str
) -> None:
    error = error_of(await client.put("/v1/users/bad_user", json=body), 422, "invalid_request")
    assert error["field"] == field
    assert reason in error["reason"]
    assert error["message"].startswith(f"{field}: ")
    error_of(await client.get("/v1/users/bad_user"), 404, "not_found")  # nothing was written


async def test_bad_path_id_and_bad_json(client: httpx.AsyncClient) -> None:
    error = error_of(await client.put("/v1/users/-bad id", json={}), 422, "invalid_request")
    assert error["field"] == "user_id"
    r = await client.put(
        "/v1/users/ok", content=b"{not json", headers={"content-type": "application/json"}
    )
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == "body" and "JSON" in error["reason"]
    error = error_of(await client.get("/v1/users", params={"limit": 0}), 422, "invalid_request")
    assert error["field"] == "limit"
    error = error_of(await client.get("/v1/no-such-route"), 404, "not_found")


async def test_devices_and_preferences(client: httpx.AsyncClient) -> None:
    device = {"platform": "fcm", "token": "fcm-token-0123456789", "label": "Pixel"}
    r = await client.post("/v1/users/user_001/devices", json=device)
    assert r.status_code == 201 and r.json()["user_id"] == "user_001"
    error = error_of(await client.post("/v1/users/nobody/devices", json=device), 404, "not_found")
    assert "nobody" in error["reason"]
    assert (await client.delete("/v1/devices/fcm/fcm-token-0123456789")).status_code == 204
    error_of(await client.delete("/v1/devices/fcm/fcm-token-0123456789"), 404, "not_found")
    error = error_of(await client.delete("/v1/devices/fax/abc"), 422, "invalid_request")
    assert error["field"] == "platform"

    prefs = {"channels": {"sms": False}, "quiet_hours": {"start": "22:00", "end": "07:00"}}
    r = await client.put("/v1/users/user_002/preferences", json=prefs)
    assert r.status_code == 200, r.text
    got = (await client.get("/v1/users/user_002/preferences")).json()
    assert got["channels"] == {"sms": False} and got["quiet_hours"]["start"] == "22:00:00"
    bad = {"quiet_hours": {"start": "22:00", "end": "22:00"}}
    error = error_of(
        await client.put("/v1/users/user_002/preferences", json=bad), 422, "invalid_request"
    )
    assert error["field"] == "quiet_hours" and "must differ" in error["reason"]


PING = {
    "id": "ping",
    "channels": ["email"],
    "content": {"subject": "Ping {{ n }}", "text": "ping number {{ n }}"},
    "sample_data": {"n": 1},
}


async def test_template_registration_and_versions(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/templates", json=PING)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    again = await client.post("/v1/templates", json=PING)
    assert again.status_code == 200 and again.json()["version"] == 1  # unchanged: no new version
    changed = {**PING, "content": {"subject": "Pong {{ n }}", "text": "{{ n }}"}}
    r = await client.post("/v1/templates", json=changed)
    assert r.status_code == 201 and r.json()["version"] == 2
    assert (await client.get("/v1/templates/ping")).json()["content"]["subject"] == "Pong {{ n }}"
    old = await client.get("/v1/templates/ping", params={"version": 1})
    assert old.json()["content"]["subject"] == "Ping {{ n }}"
    error_of(await client.get("/v1/templates/ping", params={"version": 9}), 404, "not_found")
    ids = {t["id"] for t in (await client.get("/v1/templates")).json()}
    assert {"ping", "welcome"} <= ids


@pytest.mark.parametrize(
    ("content", "field", "reason"),
    [
        ({"subject": "s", "text": "{{ ''.__class__.__mro__ }}"}, "content.text", "sandbox"),
        ({"subject": "{{ n", "text": "t"}, "content.subject", ""),
        ({"subject": "s", "text": "{{ missing }}"}, "content.text", "missing"),
    ],
)
async def test_bad_templates_are_refused_with_the_field(
    client: httpx.AsyncClient, stack: Stack, content: dict[str, str], field: str, reason: str
) -> None:
    body = {**PING, "id": "evil", "content": content}
    error = error_of(await client.post("/v1/templates", json=body), 422, "invalid_request")
    assert error["field"] == field
    assert reason in error["reason"]
    assert await stack.store.get_template("evil") is None


def test_openapi_builds_with_summaries_and_the_error_shape() -> None:
    schema = app.openapi()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 22
    assert all(op.get("summary") for op in operations)
    assert "ErrorBody" in schema["components"]["schemas"]
    # FastAPI's default 422 shape would contradict what the handlers send.
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    put_user = schema["paths"]["/v1/users/{user_id}"]["put"]
    assert put_user["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
