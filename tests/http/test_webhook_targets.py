"""Registering a user refuses webhook and Slack URLs aimed at non-public addresses, naming the
field (the test stack allows loopback only, as the dev stack does)."""

from __future__ import annotations

import httpx
import pytest

from tests.http.helpers import error_of


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/",
        "https://2852039166/",
        "https://0xa9fea9fe/",
        "https://[::ffff:169.254.169.254]/",
        "https://10.0.0.1/hook",
        "https://10.1/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "http://hooks.example.com/plain-http",
    ],
)
@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("webhook_url", lambda u: {"webhook_url": u}),
        ("webhook_urls[1]", lambda u: {"webhook_urls": ["https://hooks.example.com/a", u]}),
        ("slack_webhook_url", lambda u: {"slack_webhook_url": u}),
    ],
)
async def test_non_public_targets_are_refused_naming_the_field(
    client: httpx.AsyncClient, url: str, field: str, body: object
) -> None:
    assert callable(body)
    r = await client.put("/v1/users/target-test", json=body(url))
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == field, error
    assert (await client.get("/v1/users/target-test")).status_code == 404


async def test_public_and_allowed_targets_are_accepted(client: httpx.AsyncClient) -> None:
    body = {
        "webhook_url": "https://hooks.example.com/in?token=x",
        "webhook_urls": ["http://127.0.0.1:9/allowed-in-tests"],
    }
    r = await client.put("/v1/users/target-ok", json=body)
    assert r.status_code == 200, r.text
