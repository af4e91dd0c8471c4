"""Two API processes on one PostgreSQL database: a stream served by one receives what the other
(or a worker, here this test's own store) writes, through LISTEN/NOTIFY."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from tests.http.serving import EventReader, api_process
from tests.store.conftest import PG_URL, _postgres_answers
from tidings import inbox_tokens
from tidings.inbox import InboxState
from tidings.models import User
from tidings.store import Store

pytestmark = pytest.mark.postgres
SECRET = "inbox-secret-for-the-two-process-test-0123456789"


@pytest_asyncio.fixture(loop_scope="session")
async def database_url() -> AsyncIterator[str]:
    """A database of its own: the API processes take a plain URL (no search_path to set)."""
    if not _postgres_answers():
        pytest.skip("PostgreSQL is not accepting connections at 127.0.0.1:5432")
    name = f"tidings_inbox_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_a_stream_on_one_process_gets_what_another_writes(
    time_env: WorkflowEnvironment, database_url: str
) -> None:
    store = await Store.open(database_url)  # migrates before the processes start
    env = {
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_TEMPORAL_ADDRESS": time_env.client.service_client.config.target_host,
        "TIDINGS_INBOX_SECRET": SECRET,
        "TIDINGS_INBOX_HEARTBEAT_SECONDS": "60",
    }
    try:
        await store.upsert_user(User(id="far"))
        item = await store.add_inbox_item(user_id="far", notification_id="n-0", title="t", body="")
        token = inbox_tokens.mint(SECRET, "far", datetime.now(UTC) + timedelta(minutes=10))
        with api_process(env) as streaming, api_process(env) as writing:
            async with (
                httpx.AsyncClient(timeout=30) as http,
                http.stream(
                    "GET", f"{streaming}/v1/users/far/inbox/stream", params={"token": token}
                ) as response,
            ):
                assert response.status_code == 200
                events = EventReader(response)
                assert (await events.next_named()).event == "counts"

                # A delivery written elsewhere (the worker's process; here, this one). Only a
                # NOTIFY can bring it: streams do not re-read on heartbeats and PostgreSQL has
                # no poll. How fast is bench/engagement.py's to measure (tests assert no speed;
                # on an idle machine this is a few ms, far under the one-second goal).
                added = await store.add_inbox_item(
                    user_id="far", notification_id="n-1", title="new", body=""
                )
                event = await events.next_named(within=10)
                assert event.event == "item" and event.json()["item"]["id"] == added.id

                # A mark through the other API process.
                r = await http.post(
                    f"{writing}/v1/users/far/inbox/mark",
                    json={"state": InboxState.READ.value, "item_ids": [item.id]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
                event = await events.next_named(within=5)
                assert event.event == "state" and event.json()["ids"] == [item.id]
                assert event.json()["counts"] == {"unseen": 1, "unread": 1}
    finally:
        await store.close()
