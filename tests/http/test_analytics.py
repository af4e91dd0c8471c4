"""/v1/analytics and /v1/segments over HTTP: the figures are the store's (checked by hand in
tests/store/test_analytics.py), bad input is a 422 naming the field, unknown names are 404."""

from __future__ import annotations

from datetime import timedelta

import httpx

from bench.analytics_data import START, load
from tests.http.helpers import error_of
from tests.support import Stack
from tidings.analytics import MetricsFilter, Period

PERIOD = {"start": START.isoformat(), "end": (START + timedelta(days=10)).isoformat()}


async def test_metrics_and_rankings_come_from_the_store(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await load(stack.tidings.store.engine, 0.0003)
    period = Period.model_validate(PERIOD)
    r = await client.get("/v1/analytics/metrics", params={**PERIOD, "channel": "email"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = await stack.tidings.store.analytics_metrics(period, MetricsFilter(channel="email"))
    assert body["counts"] == expected.counts.model_dump()
    assert body["rates"]["open_rate"] == expected.counts.open_rate
    assert len(body["series"]) == 10
    r = await client.get(
        "/v1/analytics/templates", params={**PERIOD, "by": "click_rate", "minimum_sample": 5}
    )
    assert r.status_code == 200 and r.json(), r.text
    for path in ("channels", "providers"):
        r = await client.get(f"/v1/analytics/{path}", params=PERIOD)
        assert r.status_code == 200 and {c["channel"] for c in r.json()} == {"email", "push", "sms"}
    r = await client.get("/v1/analytics/users/u0000003")
    assert r.status_code == 200 and r.json()["user_id"] == "u0000003"


async def test_bad_analytics_queries_name_the_field(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/analytics/metrics", params={"start": PERIOD["start"]})
    assert error_of(r, 422, "invalid_request")["field"] == "end"
    r = await client.get(
        "/v1/analytics/metrics", params={"start": PERIOD["end"], "end": PERIOD["start"]}
    )
    assert error_of(r, 422, "invalid_request")["field"] == "period.end"
    r = await client.get("/v1/analytics/metrics", params={"variant": "a"})
    assert error_of(r, 422, "invalid_request")["field"] == "variant"
    r = await client.get("/v1/analytics/metrics", params={"segment": "nope"})
    assert error_of(r, 404, "not_found")
    r = await client.get("/v1/analytics/users/nobody")
    assert error_of(r, 404, "not_found")


async def test_segments_are_saved_counted_paged_and_deleted(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    bad = {"name": "bad", "rules": {"all": [{"field": "locale", "op": "like", "value": "en"}]}}
    r = await client.post("/v1/segments", json=bad)
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == "rules.all[0].op" and "like" in error["reason"]
    rules = {"field": "email", "op": "exists"}
    r = await client.post("/v1/segments", json={"name": "reachable", "rules": rules})
    assert r.status_code == 201, r.text
    r = await client.post("/v1/segments", json={"name": "reachable", "rules": rules})
    assert r.status_code == 200
    users = await stack.tidings.store.list_users(limit=1000)
    with_email = sorted(u.id for u in users if u.email)
    r = await client.get("/v1/segments/reachable")
    assert r.status_code == 200 and r.json()["count"] == len(with_email)
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await client.get("/v1/segments/reachable/members", params=params)).json()
        seen += page["user_ids"]
        after = page["next_after"]
        if after is None:
            break
    assert seen == with_email
    assert "reachable" in [s["name"] for s in (await client.get("/v1/segments")).json()]
    assert (await client.delete("/v1/segments/reachable")).status_code == 204
    assert error_of(await client.delete("/v1/segments/reachable"), 404, "not_found")
