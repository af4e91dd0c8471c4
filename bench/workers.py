"""What the bench's worker runs, wherever it runs (a child process, bench/worker_child.py, or
the bench's own process): the real worker's Workers for notifications, built as worker/main.py
builds them, and the ceiling's trivial Worker, both with the same poller tuning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import PollerBehavior, PollerBehaviorAutoscaling, Worker

from activities.notification import NotificationActivities
from bench.trivial import TrivialWorkflow, noop
from tidings.channels.base import ChannelSender
from tidings.models import Channel
from tidings.settings import Settings
from tidings.store import Store
from worker.main import (
    DEFAULT_NONSTICKY_TO_STICKY_POLL_RATIO,
    DEFAULT_POLLERS,
    build_workers,
    workflow_runner,
)


def _shipped(field: str) -> int:
    """A Settings field's default, without reading the environment."""
    default: int = Settings.model_fields[field].default
    return default


@dataclass(frozen=True)
class Tuning:
    """Poller options handed to every Worker, the notification ones and the ceiling's alike."""

    pollers: str = "default"  # "default" (SDK: at most 5) or "autoscaling"
    nonsticky_ratio: float = DEFAULT_NONSTICKY_TO_STICKY_POLL_RATIO
    # Per Worker; the worker's own defaults (TIDINGS_WORKER_MAX_CONCURRENT_*). Pass 100 to
    # measure the SDK's default instead.
    max_activities: int | None = _shipped("worker_max_concurrent_activities")
    max_local_activities: int | None = _shipped("worker_max_concurrent_local_activities")
    max_cached_workflows: int = _shipped("worker_max_cached_workflows")
    max_workflow_tasks: int | None = _shipped("worker_max_concurrent_workflow_tasks")

    @property
    def poller_behavior(self) -> PollerBehavior:
        if self.pollers == "autoscaling":
            return PollerBehaviorAutoscaling()
        if self.pollers == "default":
            return DEFAULT_POLLERS
        raise ValueError(f"pollers: {self.pollers!r} is neither 'default' nor 'autoscaling'")

    @property
    def label(self) -> str:
        slots = f"{self.max_activities or 'default'}/{self.max_local_activities or 'default'}"
        return (
            f"pollers={self.pollers}, nonsticky_to_sticky_poll_ratio={self.nonsticky_ratio},"
            f" activity/local activity slots={slots},"
            f" workflow task slots={self.max_workflow_tasks or 'default'}"
        )


def notification_workers(
    client: Client,
    store: Store,
    senders: Mapping[Channel, ChannelSender],
    settings: Settings,
    tuning: Tuning,
) -> list[Worker]:
    """The worker's Workers (worker/main.py build_workers) on the bench's task queue."""
    return build_workers(
        client,
        NotificationActivities(store, senders),
        task_queue=settings.task_queue,
        channels=senders,
        workflow_pollers=tuning.poller_behavior,
        activity_pollers=tuning.poller_behavior,
        nonsticky_to_sticky_poll_ratio=tuning.nonsticky_ratio,
        max_concurrent_activities=tuning.max_activities,
        max_concurrent_local_activities=tuning.max_local_activities,
        max_cached_workflows=tuning.max_cached_workflows,
        max_concurrent_workflow_tasks=tuning.max_workflow_tasks,
    )


def trivial_worker(client: Client, queue: str, tuning: Tuning) -> Worker:
    """The ceiling's Worker: trivial workflows (one local activity each) on their own queue, in
    the sandbox the worker runs notifications in (`workflow_runner`), so both pay the same."""
    return Worker(
        client,
        task_queue=queue,
        workflows=[TrivialWorkflow],
        activities=[noop],
        workflow_runner=workflow_runner(),
        workflow_task_poller_behavior=tuning.poller_behavior,
        nonsticky_to_sticky_poll_ratio=tuning.nonsticky_ratio,
        max_concurrent_local_activities=tuning.max_local_activities,
    )
