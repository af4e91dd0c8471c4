"""Starting a NotificationWorkflow: one place for what every start of a notification carries.

The client's single send, a bulk's fan-out and a broadcast's waiting recipients all start runs;
each must use the same business-key id (USE_EXISTING, so a retried start starts nobody twice),
the priority's queue, the search attributes the Web UI filters by and the summary it shows.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from tidings.models import NotificationStatus
from workflows import search_attributes as sa
from workflows.io import NotificationInput
from workflows.queues import workflow_id, workflow_queue

# By name: activities start runs too, and importing the workflow module there would drag it
# through the bulk workflow's sandbox for nothing.
NOTIFICATION_WORKFLOW = "NotificationWorkflow"


async def start_notification(
    client: Client, prepared: NotificationInput, *, broadcast_id: str | None = None
) -> None:
    """Start the run of `prepared` on `prepared.task_queue_base`'s queue for its priority.
    Raises WorkflowAlreadyStartedError when a finished run has its id (callers decide)."""
    req = prepared.request
    attributes: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.USER, req.user_id),
        SearchAttributePair(sa.TEMPLATE, req.template_id),
        SearchAttributePair(sa.PRIORITY, prepared.priority.value),
        SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
        SearchAttributePair(sa.CHANNELS, [c.value for c in req.channels or []]),
    ]
    summary = f"{req.template_id} v{prepared.template_version} to {req.user_id}"
    summary += f" ({prepared.priority.value})"
    if broadcast_id is not None:
        attributes.append(SearchAttributePair(sa.BROADCAST, broadcast_id))
        summary += f", broadcast {broadcast_id}"
    await client.start_workflow(
        NOTIFICATION_WORKFLOW,
        prepared,
        id=workflow_id(prepared.notification_id),
        task_queue=workflow_queue(prepared.task_queue_base, prepared.priority),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(attributes),
        static_summary=summary,
    )
