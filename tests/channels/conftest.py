from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver


@pytest.fixture
def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# One server of each per session (start/stop costs more than the tests); every test gets it
# back with no messages and no faults left over.


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def _session_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def _session_receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as r:
        yield r


@pytest.fixture
def sink(_session_sink: SmtpSink) -> Iterator[SmtpSink]:
    _session_sink.clear()
    yield _session_sink
    _session_sink.clear()


@pytest.fixture
def receiver(_session_receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    _session_receiver.clear()
    yield _session_receiver
    _session_receiver.clear()
