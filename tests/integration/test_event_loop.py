"""The worker on uvloop, its default loop (tidings/eventloop.py): the SDK's core threads hand
activations and activity tasks to it with call_soon_threadsafe, aiosqlite and aiosmtplib run on
it, and every notification still lands once on both channels."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from bench.measure import DeliveryCheck, measure_throughput
from bench.stack import bench_stack
from tidings import eventloop
from tidings.models import NotificationStatus

pytestmark = pytest.mark.integration


async def _notifications_on_this_loop(
    count: int,
) -> tuple[type[asyncio.AbstractEventLoop], DeliveryCheck, list[NotificationStatus]]:
    async with bench_stack(users=2, worker_process=False) as stack:
        result = await measure_throughput(stack, count)
        ids = [nid for nid in stack.sink_index.refresh() if nid.startswith("tp-")]
        # The email reaches the sink before its activity's result reaches the run (and the
        # in-app row before its local activity's): wait for each run's own status.
        statuses = [(await stack.tidings.wait_sent(nid)).status for nid in sorted(ids)]
    return type(asyncio.get_running_loop()), result.delivery, statuses


def test_notifications_go_through_workers_running_on_uvloop() -> None:
    loop_type, check, statuses = eventloop.run(_notifications_on_this_loop(4))
    assert loop_type is uvloop.Loop
    assert (check.expected, check.emails, check.inbox, check.duplicate_emails) == (4, 4, 4, 0)
    assert statuses == [NotificationStatus.SENT] * 4
