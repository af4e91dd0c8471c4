"""Bulk acceptance: `Tidings.notify_many`, one notification per recipient, each with its own
outcome.

    result = await tidings.notify_many(["u1", "u2", "ghost"], "welcome", data={...})
    result.started + result.accepted, result.rejected  # 2, 1
    result.outcomes[2].field, result.outcomes[2].reason  # "user_ids[2]", "no user 'ghost'"

The whole bulk costs a fixed number of store transactions whatever its size: one read for every
user, one for the template, one write. Renders are checked once per distinct (channel, locale,
data). A bad recipient is refused on its own and the valid ones go; `atomic=True` keeps
all-or-nothing. Problems shared by every recipient (unknown template, a bad shared field, too
many recipients) refuse the whole call with `InvalidRequest`, as before.

Up to `settings.bulk_inline_max` recipients to start, their runs start inline (`started`). Above
it a bulk is accepted durably (`accepted`, `starter.client_bulk_durable`).

The request and result types are in `starter.client_bulk_models`, the checks that touch no store
in `starter.client_bulk_checks`; this module re-exports the public names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from starter.client_bulk_checks import (
    _atomic_outcomes,
    _Item,
    _parse_recipients,
    _RenderCheck,
    _reused,
    check_channels,
    optimal_window_end,
)
from starter.client_bulk_durable import DurableBulkMixin
from starter.client_bulk_models import (
    _OUTCOMES,
    BulkRejected,
    BulkResult,
    NotificationRef,
    Recipient,
    RecipientOutcome,
)
from tidings import idempotency
from tidings.errors import InvalidRequest
from tidings.models import NotificationRequest, Template, check_horizon
from tidings.settings import Settings
from tidings.store import Store
from workflows.io import NotificationInput

MAX_BULK = 10_000
# Starts in flight at once: enough to hide the round trip to the server, few enough that a
# bulk of 10,000 does not queue thousands of RPCs (and their payloads) in the process.
BULK_START_CONCURRENCY = 64


class BulkMixin(DurableBulkMixin):
    settings: Settings
    store: Store
    temporal: Client

    if TYPE_CHECKING:  # provided by Tidings

        async def now(self) -> datetime: ...

        async def _start_workflow(self, prepared: NotificationInput) -> None: ...

    async def notify_many(
        self,
        recipients: Sequence[str | Recipient | dict[str, Any]],
        template_id: str,
        /,
        *,
        atomic: bool = False,
        **fields: Any,
    ) -> BulkResult:
        """One notification per recipient (a user id, or a `Recipient` with its own data or
        key), every other field shared. Each recipient gets its own outcome; the valid ones
        start even when others are rejected, unless `atomic`, which raises `BulkRejected`
        and starts nothing if any is rejected. With an idempotency key K, a recipient's key
        is `K.<user_id>` unless it has its own."""
        if not recipients:
            raise InvalidRequest("user_ids", "give at least one recipient")
        if len(recipients) > MAX_BULK:
            raise InvalidRequest("user_ids", f"at most {MAX_BULK} recipients per call")
        key = fields.pop("idempotency_key", None)
        shared = self._shared_request(template_id, fields)
        now = await self.now()
        if shared.expires_at is not None and shared.expires_at <= now:
            raise InvalidRequest("expires_at", f"{shared.expires_at.isoformat()} is in the past")
        for name in ("scheduled_at", "expires_at"):
            value = getattr(shared, name)
            if value is not None:
                try:
                    check_horizon(value, now)
                except ValueError as e:
                    raise InvalidRequest(name, str(e)) from e
        optimal_latest = optimal_window_end(shared, now)
        template = await self.store.get_template(template_id)
        if template is None:
            raise InvalidRequest("template_id", f"no template {template_id!r}")
        check_channels(shared, template)

        items, requests = _parse_recipients(recipients, shared, key)
        users = await self.store.get_users([r.user_id for r in requests.values()])
        renders = _RenderCheck(template, now)
        seen: dict[str, _Item] = {}  # notification id -> the first recipient that has it
        keyless: dict[str, _Item] = {}  # user id -> the first recipient for that user
        for item in items:
            if item.outcome is not None:
                continue
            req = requests[item.index]
            user = users.get(req.user_id)
            if user is None:
                item.reject("user_id", f"no user {req.user_id!r}")
                continue
            problem = await renders.check(req, user)
            if problem is not None:
                item.reject("data", problem)
                continue
            earlier = keyless.setdefault(req.user_id, item)
            if req.idempotency_key is None and earlier is not item:
                # Without a key, the same user twice is most likely a mistake in the list,
                # not two notifications wanted: give each its own key to send both.
                item.reject("user_id", f"repeats {earlier.path('user_id')}")
                continue
            item.prepared = self._run_input(req, template, optimal_latest)
            item.fingerprint = idempotency.fingerprint(req)
            nid = item.prepared.notification_id
            first = seen.get(nid)
            if first is None:
                seen[nid] = item
            elif first.fingerprint != item.fingerprint:
                item.reject("idempotency_key", _reused(nid, f"by {first.prefix}"))
            else:
                item.same_as = first  # the same request twice: one notification

        if atomic and any(i.outcome is not None and i.outcome.field for i in items):
            raise BulkRejected(_atomic_outcomes(items))
        to_start = [i for i in items if i.outcome is None and i.same_as is None]
        if atomic:  # a conflicting key must leave nothing written: look before claiming
            await self._check_keys(to_start)
            if any(i.outcome is not None and i.outcome.field for i in items):
                raise BulkRejected(_atomic_outcomes(items))
        bulk_id = None
        if len(to_start) > self.settings.bulk_inline_max:
            bulk_id = await self._accept_durably(items, to_start, template, atomic=atomic)
        else:
            await self._claim_keys(to_start)
            if atomic and any(i.outcome is not None and i.outcome.field for i in items):
                raise BulkRejected(_atomic_outcomes(items))  # a key claimed meanwhile by another
            await self._start_all([i for i in to_start if i.outcome is None])
        for item in items:
            if item.same_as is not None:
                item.settle_as_repeat()
        outcomes = [i.outcome for i in items if i.outcome is not None]
        assert len(outcomes) == len(items)
        counts = {o: sum(1 for x in outcomes if x.outcome == o) for o in _OUTCOMES}
        return BulkResult(outcomes=outcomes, bulk_id=bulk_id, **counts)

    def _shared_request(self, template_id: str, fields: dict[str, Any]) -> NotificationRequest:
        """The fields every recipient shares, checked once: an error here is the whole call's."""
        if "user_id" in fields:
            raise InvalidRequest("user_id", "a bulk names its users in its recipients")
        try:
            return NotificationRequest.model_validate(
                {**fields, "user_id": "bulk", "template_id": template_id}
            )
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e

    def _run_input(
        self, req: NotificationRequest, template: Template, optimal_latest: datetime | None
    ) -> NotificationInput:
        return NotificationInput(
            notification_id=req.idempotency_key or uuid.uuid4().hex,
            request=req,
            template_version=template.version,
            priority=req.priority or template.default_priority,
            engagement_window_hours=req.engagement_window_hours
            or self.settings.engagement_window_hours,
            task_queue_base=self.settings.task_queue,
            fallback=template.fallback if req.fallback is None else req.fallback,
            optimal_latest=optimal_latest,
        )

    async def _claim_keys(self, items: list[_Item]) -> None:
        """Every key claimed in one transaction before anything starts (a crash between the
        claim and the start leaves a claim whose repeat starts the workflow, as for one)."""
        keyed = {
            i.prepared.notification_id: i
            for i in items
            if i.prepared is not None and i.prepared.request.idempotency_key
        }
        if not keyed:
            return
        claimed = await self.store.claim_idempotency_keys(
            {nid: item.fingerprint for nid, item in keyed.items()}
        )
        for nid, theirs in claimed.items():
            item = keyed[nid]
            if theirs != item.fingerprint:
                item.reject("idempotency_key", _reused(nid, "before"))
            else:
                # Started before (or claimed by a start that crashed): start again, which
                # USE_EXISTING makes a no-op for a running run, and report it as existing.
                item.claimed_before = True

    async def _check_keys(self, items: list[_Item]) -> None:
        """Rejects the recipients whose key was used before for a different request."""
        keyed = {i.prepared.notification_id: i for i in items if i.prepared is not None}
        keys = [
            nid for nid, i in keyed.items() if i.prepared and i.prepared.request.idempotency_key
        ]
        before = await self.store.idempotency_fingerprints(keys)
        for nid, theirs in before.items():
            if theirs != keyed[nid].fingerprint:
                keyed[nid].reject("idempotency_key", _reused(nid, "before"))

    async def _start_all(self, items: list[_Item]) -> None:
        limit = asyncio.Semaphore(BULK_START_CONCURRENCY)

        async def start(item: _Item) -> None:
            assert item.prepared is not None
            async with limit:
                try:
                    await self._start_workflow(item.prepared)
                    item.done("existed" if item.claimed_before else "started")
                except WorkflowAlreadyStartedError:
                    item.done("existed")  # a run that finished earlier with the same key
                except Exception as e:  # one failed start must not lose the others' outcomes
                    item.done("failed", f"{type(e).__name__}: {e}")

        await asyncio.gather(*(start(i) for i in items))


__all__ = [
    "BULK_START_CONCURRENCY",
    "MAX_BULK",
    "BulkMixin",
    "BulkRejected",
    "BulkResult",
    "NotificationRef",
    "Recipient",
    "RecipientOutcome",
    "optimal_window_end",
]
