"""The worker process: builds the long-lived clients once, registers the workflows and activities
on their task queues, and shuts down gracefully on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import PollerBehavior, PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities.broadcast import BroadcastActivities
from activities.broadcast_enroll import ExperimentEnroller
from activities.bulk import BulkActivities
from activities.digest import DigestActivities
from activities.experiment import ExperimentActivities
from activities.notification import NotificationActivities
from tidings import eventloop
from tidings.bulks import bulk_queue
from tidings.channels.base import ChannelSender, close_all
from tidings.channels.email import EmailSender
from tidings.channels.failover import FailoverSender
from tidings.channels.in_app import InAppSender
from tidings.channels.providers import build_provider_senders
from tidings.channels.webhook import WebhookSender
from tidings.frequency import FrequencyCaps
from tidings.models import Channel, Priority
from tidings.settings import Settings
from tidings.store import Store
from worker.deferred import DeferredStarter
from worker.logs import install_log_filter
from worker.process import precompile, settle_heap
from worker.sandbox import sandbox_runner
from workflows.broadcast import BroadcastWorkflow
from workflows.bulk import BulkStartWorkflow
from workflows.connect import connect as connect_temporal
from workflows.digest import DigestWorkflow
from workflows.experiment import ExperimentWorkflow
from workflows.notification import NotificationWorkflow
from workflows.queues import channel_queue, workflow_queue
from workflows.scheduled import ScheduledSendWorkflow

log = logging.getLogger("tidings.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
DEFAULT_ENGAGEMENT_HOURS = 72.0  # Settings' default, for workers built without settings
# On the normal workflow queue beside NotificationWorkflow.
LONG_LIVED = [ExperimentWorkflow, BroadcastWorkflow, DigestWorkflow, ScheduledSendWorkflow]

# The SDK's own defaults, named so that callers (bench/throughput.py) can try alternatives such as
# PollerBehaviorAutoscaling without this module changing what it ships with.
DEFAULT_POLLERS: PollerBehavior = PollerBehaviorSimpleMaximum(maximum=5)
DEFAULT_NONSTICKY_TO_STICKY_POLL_RATIO = 0.2
DEFAULT_MAX_CACHED_WORKFLOWS = 1000

# The sandbox stays on (workflow code is still re-imported per run and its calls checked), but
# the domain, the contracts and the libraries they use are imported once per process rather than
# per run: re-importing them is pure cost, since none keeps state a run could leak to another.
PASSTHROUGH_MODULES = (
    "tidings",
    "activities",
    "workflows.io",
    "workflows.policies",
    "workflows.queues",
    "workflows.search_attributes",
    "workflows.converter",
    "workflows.codec",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "sqlalchemy",
    "jinja2",
    "markupsafe",
    "httpx",
    "cryptography",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return sandbox_runner(restrictions)


def build_email_sender(settings: Settings) -> ChannelSender:
    if not settings.smtp_fallback_relays:
        return EmailSender(settings)
    relays = [(f"{settings.smtp_host}:{settings.smtp_port}", EmailSender(settings))]
    for relay in settings.smtp_fallback_relays:
        relay_settings = settings.model_copy(
            update={
                "smtp_host": relay.host,
                "smtp_port": relay.port,
                "smtp_username": relay.username,
                "smtp_password": relay.password,
                "smtp_starttls": relay.starttls,
                "smtp_use_tls": relay.use_tls,
            }
        )
        relays.append((f"{relay.host}:{relay.port}", EmailSender(relay_settings)))
    return FailoverSender(Channel.EMAIL, relays)


def build_senders(
    settings: Settings, store: Store, http: httpx.AsyncClient
) -> dict[Channel, ChannelSender]:
    return {
        Channel.EMAIL: build_email_sender(settings),
        Channel.IN_APP: InAppSender(store),
        Channel.WEBHOOK: WebhookSender(settings, http),
        **build_provider_senders(settings, store, http),  # push, SMS, Slack when configured
    }


def build_workers(
    client: Client,
    activities: NotificationActivities,
    *,
    task_queue: str,
    channels: Iterable[Channel],
    workflow_pollers: PollerBehavior = DEFAULT_POLLERS,
    activity_pollers: PollerBehavior = DEFAULT_POLLERS,
    nonsticky_to_sticky_poll_ratio: float = DEFAULT_NONSTICKY_TO_STICKY_POLL_RATIO,
    max_concurrent_activities: int | None = None,
    max_concurrent_local_activities: int | None = None,
    max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS,
    max_concurrent_workflow_tasks: int | None = None,
    rate_limits: Mapping[Channel, float] | None = None,
    experiments: ExperimentActivities | None = None,
    broadcasts: BroadcastActivities | None = None,
    digests: DigestActivities | None = None,
    bulks: BulkActivities | None = None,
) -> list[Worker]:
    """One Worker per queue: each has its own pollers and slots, which is what keeps the
    `-urgent` queues moving while the normal ones hold a backlog. The poller options are passed
    to every Worker; with the defaults, 5 workflow pollers leave about one polling for new
    workflows (the rest poll the sticky queue), which caps start-heavy bursts.

    `max_concurrent_activities` / `max_concurrent_local_activities` bound each Worker's slots
    (None keeps the SDK's 100). Work beyond the bound waits in its Temporal task queue, where
    the `-urgent` queues pass it, instead of inside this process, where every queue shares one
    event loop and one database connection pool.

    `rate_limits` caps each channel's deliveries per second. The server enforces it per task
    queue across every worker, and the normal and `-urgent` queues each get the full limit, so a
    provider sees at most twice the figure while both queues are busy: urgent traffic is never
    held back by a normal backlog's share of the limit.

    ExperimentWorkflow, DigestWorkflow and ScheduledSendWorkflow run on the normal workflow queue
    with their activities (`experiments`, `digests`, built from `activities`' store when not
    given). So does BroadcastWorkflow with its planning activities (`broadcasts`, likewise built
    from `activities` when not given); its batch deliveries run on each channel's queue beside the
    single sends, so one rate limit covers both (see README "Broadcasts" for why not a queue of
    their own)."""
    local: list[Callable[..., Any]] = [
        activities.plan_delivery,
        activities.record_notification,
        activities.record_channel,
        activities.record_engagement,
        activities.deliver,  # in-app, by the run's own Worker (IN_APP_LOCAL_PATCH)
    ]
    experiments = experiments or ExperimentActivities(activities.store)
    long_lived_activities: list[Callable[..., Any]] = [
        experiments.claim_enrolment,
        experiments.experiment_counts,
        experiments.finish_experiment,
    ]
    broadcasts = broadcasts or BroadcastActivities(
        activities.store,
        activities.senders,
        caps=activities.caps,
        rate_limits=rate_limits,
        enrol=ExperimentEnroller(client),
        start_deferred=DeferredStarter(
            client, task_queue=task_queue, engagement_window_hours=DEFAULT_ENGAGEMENT_HOURS
        ),
    )
    long_lived_activities += [
        broadcasts.plan_page,
        broadcasts.enrol_sample,
        broadcasts.experiment_outcome,
        broadcasts.record_broadcast,
        broadcasts.create_broadcast_record,
    ]
    digests = digests or DigestActivities(activities.store)
    long_lived_activities += [
        digests.open_digest,
        digests.seal_digest,
        digests.send_digest,
        digests.flush_digest,
    ]
    # The fan-out of bulks accepted durably, on a queue of its own (tidings.bulks.bulk_queue).
    workers: list[Worker] = [
        bulk_worker(client, bulks or BulkActivities(activities.store), task_queue)
    ]
    for priority in (Priority.MEDIUM, Priority.CRITICAL):
        urgent = priority.urgent
        workers.append(
            Worker(
                client,
                task_queue=workflow_queue(task_queue, priority),
                workflows=[NotificationWorkflow] if urgent else [NotificationWorkflow, *LONG_LIVED],
                activities=local if urgent else local + long_lived_activities,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                workflow_task_poller_behavior=workflow_pollers,
                nonsticky_to_sticky_poll_ratio=nonsticky_to_sticky_poll_ratio,
                max_concurrent_local_activities=max_concurrent_local_activities,
                max_cached_workflows=max_cached_workflows,
                max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
                workflow_runner=workflow_runner(),
            )
        )
        for channel in channels:
            workers.append(
                Worker(
                    client,
                    task_queue=channel_queue(task_queue, channel, priority),
                    activities=[activities.deliver, broadcasts.deliver_batch],
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                    activity_task_poller_behavior=activity_pollers,
                    max_concurrent_activities=max_concurrent_activities,
                    max_task_queue_activities_per_second=(rate_limits or {}).get(channel),
                )
            )
    return workers


def bulk_worker(client: Client, bulks: BulkActivities, task_queue: str) -> Worker:
    """BulkStartWorkflow and its page of starts: what starts the runs of a bulk accepted
    durably (README "Bulk"). Run alone, it starts runs that other workers execute."""
    return Worker(
        client,
        task_queue=bulk_queue(task_queue),
        workflows=[BulkStartWorkflow],
        activities=[bulks.start_page],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_runner=workflow_runner(),
    )


async def run_workers(
    workers: Sequence[Worker], stop: asyncio.Event, running: asyncio.Event | None = None
) -> None:
    """Run `workers` until `stop` is set; `running` is set once they all poll (a parent process
    waiting for its worker child, bench/worker_child.py)."""
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        # Paid once here rather than per run: see worker/process.py.
        precompile(workflows)
        settle_heap()
        log.info("worker running on %d task queues", len(workers))
        if running is not None:
            running.set()
        await stop.wait()
        log.info("shutting down: finishing in-flight activities (up to %s)", GRACEFUL_SHUTDOWN)


def workers_for(
    settings: Settings, client: Client, store: Store, senders: Mapping[Channel, ChannelSender]
) -> list[Worker]:
    """Everything one worker process runs, configured from settings."""
    caps = FrequencyCaps(settings.frequency_caps, settings.frequency_cap_policy)
    broadcasts = BroadcastActivities(
        store,
        senders,
        caps=caps,
        rate_limits=settings.channel_rate_limits,
        enrol=ExperimentEnroller(client),
        start_deferred=DeferredStarter(
            client,
            task_queue=settings.task_queue,
            engagement_window_hours=settings.engagement_window_hours,
        ),
    )
    return build_workers(
        client,
        NotificationActivities(store, senders, caps, settings=settings),
        broadcasts=broadcasts,
        task_queue=settings.task_queue,
        channels=senders,
        rate_limits=settings.channel_rate_limits,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        digests=DigestActivities(store, engagement_window_hours=settings.engagement_window_hours),
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # `tidings dev` runs the worker in-process through serve(), so it gets the filter too.
    install_log_filter()
    store = await Store.open(settings.resolved_database_url)
    try:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            client = await connect_temporal(settings)
            senders = build_senders(settings, store, http)
            try:
                await run_workers(workers_for(settings, client, store, senders), stop)
            finally:
                await close_senders(senders)
    finally:
        await store.close()


async def close_senders(senders: Mapping[Channel, ChannelSender]) -> None:
    await close_all(senders.values())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_filter()
    settings = Settings()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    eventloop.run(_main(), use_uvloop=settings.uvloop)
