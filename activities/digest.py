"""Activities of DigestWorkflow: thin adapters over the digests store, and the start of the one
notification that sends a sealed batch."""

from __future__ import annotations

from temporalio import activity
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.errors import NOT_FOUND
from tidings.digests import DigestDefinition, template_data
from tidings.models import NotificationRequest, NotificationStatus
from tidings.store import Store
from workflows import search_attributes as sa
from workflows.digest_io import (
    DigestInput,
    FlushDigestInput,
    FlushSignal,
    OpenDigestInput,
    OpenDigestOutput,
    SealInput,
    SealOutput,
    SendDigestInput,
    SendDigestOutput,
    digest_notification_id,
    digest_workflow_id,
)
from workflows.io import NotificationInput
from workflows.queues import workflow_id, workflow_queue


class DigestActivities:
    def __init__(self, store: Store, *, engagement_window_hours: float = 72.0) -> None:
        self._store = store
        self._engagement_window_hours = engagement_window_hours

    async def _definition(self, key: str) -> DigestDefinition:
        definition = await self._store.get_digest(key)
        if definition is None:
            raise ApplicationError(f"no digest {key!r}", type=NOT_FOUND, non_retryable=True)
        return definition

    @activity.defn(name="open_digest")
    async def open_digest(self, input: OpenDigestInput) -> OpenDigestOutput:
        definition = await self._definition(input.key)
        pending = await self._store.pending_digest(input.user_id, input.key)
        user = await self._store.get_user(input.user_id)
        return OpenDigestOutput(
            definition=definition,
            timezone=user.timezone if user else "UTC",
            pending=pending.pending,
            max_seq=pending.max_seq,
            next_batch=pending.next_batch,
        )

    @activity.defn(name="seal_digest")
    async def seal_digest(self, input: SealInput) -> SealOutput:
        total = await self._store.seal_digest_batch(input.user_id, input.key, input.batch)
        return SealOutput(total=total)

    @activity.defn(name="send_digest")
    async def send_digest(self, input: SendDigestInput) -> SendDigestOutput:
        """Start the batch's NotificationWorkflow under an id made of the user, key and batch:
        an attempt that started it and then failed is retried into the same notification."""
        definition = await self._definition(input.key)
        summary = await self._store.digest_batch(
            input.user_id,
            input.key,
            input.batch,
            first_n=definition.first_n,
            last_n=definition.last_n,
        )
        if summary.total == 0:
            return SendDigestOutput(total=0)
        template = await self._store.get_template(definition.template_id)
        if template is None:
            raise ApplicationError(
                f"digest {input.key!r}: no template {definition.template_id!r}",
                type=NOT_FOUND,
                non_retryable=True,
            )
        notification_id = digest_notification_id(input.user_id, input.key, input.batch)
        prepared = NotificationInput(
            notification_id=notification_id,
            request=NotificationRequest(
                user_id=input.user_id,
                template_id=template.id,
                data=template_data(input.key, summary),
            ),
            template_version=template.version,
            priority=template.default_priority,
            engagement_window_hours=self._engagement_window_hours,
            task_queue_base=input.task_queue_base,
            fallback=template.fallback,
        )
        started = True
        try:
            await activity.client().start_workflow(
                "NotificationWorkflow",
                prepared,
                id=workflow_id(notification_id),
                task_queue=workflow_queue(input.task_queue_base, prepared.priority),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.USER, input.user_id),
                        SearchAttributePair(sa.TEMPLATE, template.id),
                        SearchAttributePair(sa.PRIORITY, prepared.priority.value),
                        SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
                        SearchAttributePair(sa.CHANNELS, []),
                    ]
                ),
                static_summary=(
                    f"digest {input.key} #{input.batch} to {input.user_id}:"
                    f" {summary.total} events ({template.id} v{template.version})"
                ),
            )
        except WorkflowAlreadyStartedError:
            started = False  # finished already: this batch was sent by an earlier attempt
        return SendDigestOutput(
            notification_id=notification_id, total=summary.total, started=started
        )

    @activity.defn(name="flush_digest")
    async def flush_digest(self, input: FlushDigestInput) -> None:
        """Signal-with-start the user's digest with a flush (a schedule's digest action)."""
        await activity.client().start_workflow(
            "DigestWorkflow",
            DigestInput(
                user_id=input.user_id, key=input.key, task_queue_base=input.task_queue_base
            ),
            id=digest_workflow_id(input.user_id, input.key),
            task_queue=input.task_queue_base,
            start_signal="flush",
            start_signal_args=[FlushSignal(reason=input.reason)],
            static_summary=f"digest {input.key} for {input.user_id}",
        )
