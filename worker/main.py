"""The worker process: builds the long-lived clients once, registers the workflows and activities
on their task queues, and shuts down gracefully on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.notification import NotificationActivities
from starter.connection import connect_temporal
from tidings.channels.base import ChannelSender
from tidings.channels.email import EmailSender
from tidings.channels.in_app import InAppSender
from tidings.channels.webhook import WebhookSender
from tidings.models import Channel, Priority
from tidings.queues import channel_queue, workflow_queue
from tidings.settings import Settings
from tidings.store import Store
from workflows.notification import NotificationWorkflow

log = logging.getLogger("tidings.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=30)


def build_senders(
    settings: Settings, store: Store, http: httpx.AsyncClient
) -> dict[Channel, ChannelSender]:
    return {
        Channel.EMAIL: EmailSender(settings),
        Channel.IN_APP: InAppSender(store),
        Channel.WEBHOOK: WebhookSender(settings, http),
    }


def build_workers(
    client: Client,
    activities: NotificationActivities,
    *,
    task_queue: str,
    channels: Iterable[Channel],
) -> list[Worker]:
    """One Worker per queue: each has its own pollers and slots, which is what keeps the
    `-urgent` queues moving while the normal ones hold a backlog."""
    local: list[Callable[..., Any]] = [
        activities.plan_delivery,
        activities.record_notification,
        activities.record_engagement,
    ]
    workers: list[Worker] = []
    for priority in (Priority.MEDIUM, Priority.CRITICAL):
        workers.append(
            Worker(
                client,
                task_queue=workflow_queue(task_queue, priority),
                workflows=[NotificationWorkflow],
                activities=local,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            )
        )
        for channel in channels:
            workers.append(
                Worker(
                    client,
                    task_queue=channel_queue(task_queue, channel, priority),
                    activities=[activities.deliver],
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
            )
    return workers


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        log.info("worker running on %d task queues", len(workers))
        await stop.wait()
        log.info("shutting down: finishing in-flight activities (up to %s)", GRACEFUL_SHUTDOWN)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    store = await Store.open(settings.resolved_database_url)
    try:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            senders = build_senders(settings, store, http)
            client = await connect_temporal(settings)
            activities = NotificationActivities(store, senders)
            workers = build_workers(
                client, activities, task_queue=settings.task_queue, channels=senders
            )
            await run_workers(workers, stop)
    finally:
        await store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(_main())
