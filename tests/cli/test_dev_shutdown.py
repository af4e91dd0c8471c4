"""`tidings dev` stops every child within 10 s of SIGTERM whatever its workflows are doing
(issue 7, defect 7: it took 84 s while workflows were failing tasks, because the in-process
worker's graceful shutdown waits 30 s for activities and can hang among failing tasks)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from starter.client import Tidings
from tests.cli.devstack_support import (
    banner_address,
    dev_env_vars,
    processes_mentioning,
    settings_from,
    start_dev_process,
)
from tidings.models import Channel

pytestmark = pytest.mark.integration

STOP_BUDGET_SECONDS = 10.0
ORDER = {"order_id": "7", "amount": "5.00", "delivery_date": "tomorrow"}


async def test_sigterm_stops_everything_within_10s_with_work_in_flight(tmp_path: Path) -> None:
    env = dev_env_vars(tmp_path / "data")
    temporal_db = (tmp_path / "data" / "temporal.db").resolve()
    proc, banner = await start_dev_process(env, seed=True)
    try:
        address = banner_address(banner, "Temporal")
        twilio = banner_address(banner, "Twilio emulator")
        settings = settings_from({**env, "TIDINGS_TEMPORAL_ADDRESS": address})
        async with httpx.AsyncClient(timeout=10) as http, await Tidings.connect(settings) as t:
            # An SMS whose send hangs at the provider: an activity in flight for minutes.
            fault = {"mode": "slow", "seconds": 300, "count": 10}
            r = await http.post(f"{twilio}/_emulator/faults", json=fault)
            assert r.status_code == 200, r.text
            await t.notify(user_id="user_002", template_id="order_confirmation", data=ORDER,
                           channels=[Channel.SMS])  # fmt: skip
            # A workflow whose every task fails: no such workflow type is registered.
            await t.temporal.start_workflow(
                "NoSuchWorkflow", id=f"wedged-{uuid.uuid4().hex}", task_queue=settings.task_queue
            )
            async with asyncio.timeout(30):
                while not (await http.get(f"{twilio}/_emulator/received")).json():
                    await asyncio.sleep(0.1)
        # tidings dev itself, the Temporal dev server and the worker, at least.
        assert len(processes_mentioning(temporal_db)) >= 3

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_BUDGET_SECONDS):
            await proc.wait()
            while processes_mentioning(temporal_db):
                await asyncio.sleep(0.05)
        took = time.monotonic() - sent
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert took < STOP_BUDGET_SECONDS
    assert processes_mentioning(temporal_db) == []
