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
it a bulk is accepted durably (`accepted`): every key claimed, every notification row and the
fan-out's list written in one transaction, then one `BulkStartWorkflow` (`bulk/<bulk_id>`)
starts the runs a page at a time. The call returns once the transaction has committed and the
fan-out is started: a server start costs 5-6 ms of its CPU, which no front door can hide for
10,000 recipients, while the transaction costs well under 1 ms per recipient. If the fan-out
cannot be started (after retries) the bulk is released, claims and rows with it, and its
recipients come back `failed`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings import idempotency, rendering, send_time
from tidings.bulks import BulkRecord, BulkStartInput, bulk_queue, bulk_workflow_id
from tidings.errors import InvalidRequest, NotFound
from tidings.models import (
    Channel,
    Identifier,
    Model,
    NotificationRequest,
    Template,
    User,
    check_horizon,
)
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.bulks import BulkConflict, BulkEntry
from workflows.bulk import BulkStartWorkflow
from workflows.io import NotificationInput
from workflows.queues import workflow_id

MAX_BULK = 10_000
# Starts in flight at once: enough to hide the round trip to the server, few enough that a
# bulk of 10,000 does not queue thousands of RPCs (and their payloads) in the process.
BULK_START_CONCURRENCY = 64

# Attempts at starting a durable bulk's fan-out before it is released, and the pause before each
# retry: a server that refuses three starts over two seconds is down, not busy.
FANOUT_START_DELAYS = (0.3, 1.5)

Outcome = Literal["started", "accepted", "existed", "rejected", "failed"]


class NotificationRef(BaseModel):
    notification_id: str
    workflow_id: str
    # False when an idempotency key was used again with the same request: this is the
    # notification the first request started, and nothing new was started.
    created: bool = True


class Recipient(Model):
    """One recipient of a bulk: `data` is merged over the shared data (its keys win), and an
    own `idempotency_key` replaces the derived `<key>.<user_id>`."""

    user_id: Identifier
    data: dict[str, Any] | None = None
    idempotency_key: Identifier | None = None


class RecipientOutcome(BaseModel):
    """What became of one recipient, in the order given.

    - started: a new notification, its run started.
    - accepted: a new notification in a bulk accepted durably: its row is written and its run
      will be started by the bulk's fan-out (`Tidings.get_bulk` says how far it is).
    - existed: its idempotency key was used before for the same request (earlier, or by an
      earlier recipient of this bulk): that notification, nothing new started.
    - rejected: refused, `field` and `reason` say why; nothing started for it.
    - failed: valid, but the start itself failed (Temporal unreachable...); with an idempotency
      key, sending the same bulk again starts it."""

    index: int
    user_id: str
    outcome: Outcome
    notification_id: str | None = None
    workflow_id: str | None = None
    field: str | None = None
    reason: str | None = None

    @property
    def created(self) -> bool:
        return self.outcome in ("started", "accepted")


class BulkResult(BaseModel):
    outcomes: list[RecipientOutcome]
    started: int = 0
    accepted: int = 0
    existed: int = 0
    rejected: int = 0
    failed: int = 0
    # Set when the bulk was accepted durably: `Tidings.get_bulk(bulk_id)` shows its fan-out.
    bulk_id: str | None = None

    @property
    def refs(self) -> list[NotificationRef]:
        """The recipients that have a notification (started now or before), in order."""
        return [
            NotificationRef(
                notification_id=o.notification_id, workflow_id=o.workflow_id, created=o.created
            )
            for o in self.outcomes
            if o.notification_id is not None
            and o.workflow_id is not None
            and o.outcome in ("started", "accepted", "existed")
        ]


class BulkRejected(InvalidRequest):
    """An atomic bulk with at least one bad recipient: nothing was started. `outcomes` holds
    every recipient's verdict (the good ones as "rejected" too, with the reason why)."""

    def __init__(self, outcomes: list[RecipientOutcome]) -> None:
        bad = [o for o in outcomes if o.field is not None]
        first = bad[0]
        assert first.field is not None and first.reason is not None
        more = f" (and {len(bad) - 1} more rejected)" if len(bad) > 1 else ""
        super().__init__(first.field, f"{first.reason}{more}; atomic: nothing was started")
        self.outcomes = outcomes


@dataclass
class _Item:
    index: int
    user_id: str
    prefix: str  # "user_ids[3]" or "recipients[3]"
    plain: bool  # given as a bare user id
    prepared: NotificationInput | None = None
    fingerprint: str = ""
    outcome: RecipientOutcome | None = None
    claimed_before: bool = False  # its key was claimed earlier with the same request
    same_as: _Item | None = None  # an earlier recipient of this bulk with the same request

    def path(self, field: str) -> str:
        if self.plain and field == "user_id":
            return self.prefix
        return f"{self.prefix}.{field}"

    def reject(self, field: str, reason: str) -> None:
        self.outcome = RecipientOutcome(
            index=self.index,
            user_id=self.user_id,
            outcome="rejected",
            field=self.path(field),
            reason=reason,
        )

    def settle_as_repeat(self) -> None:
        """A repeat of an earlier recipient: its notification, or its rejection."""
        first = self.same_as
        assert first is not None and first.outcome is not None
        if first.outcome.outcome in ("started", "accepted", "existed"):
            self.done("existed")
        elif first.outcome.field is not None and first.outcome.reason is not None:
            field = first.outcome.field.removeprefix(first.prefix).lstrip(".") or "user_id"
            self.reject(field, first.outcome.reason)
        else:
            self.done(first.outcome.outcome, first.outcome.reason)

    def done(self, outcome: Outcome, reason: str | None = None) -> None:
        assert self.prepared is not None
        nid = self.prepared.notification_id
        self.outcome = RecipientOutcome(
            index=self.index,
            user_id=self.user_id,
            outcome=outcome,
            notification_id=nid,
            workflow_id=workflow_id(nid),
            reason=reason,
        )


class BulkMixin:
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
        _check_channels(shared, template)

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

    async def get_bulk(self, bulk_id: str) -> BulkRecord:
        """A bulk accepted durably: how many recipients it accepted, how many of their runs
        its fan-out has started so far, and its status."""
        record = await self.store.get_bulk(bulk_id)
        if record is None:
            raise NotFound("bulk", bulk_id)
        return record

    async def _accept_durably(
        self, items: list[_Item], to_start: list[_Item], template: Template, *, atomic: bool
    ) -> str:
        """One transaction for the whole bulk, then its fan-out; returns the bulk id."""
        bulk_id = uuid.uuid4().hex
        entries = []
        for item in to_start:
            prepared = item.prepared
            assert prepared is not None
            keyed = prepared.request.idempotency_key is not None
            entries.append(
                BulkEntry(
                    notification_id=prepared.notification_id,
                    user_id=prepared.request.user_id,
                    template_id=template.id,
                    template_version=prepared.template_version,
                    priority=prepared.priority,
                    payload=prepared.model_dump(mode="json"),
                    fingerprint=item.fingerprint if keyed else None,
                )
            )
        try:
            accepted = await self.store.accept_bulk(bulk_id, template.id, entries, atomic=atomic)
        except BulkConflict as e:
            for item in to_start:
                assert item.prepared is not None
                if item.prepared.notification_id in e.conflicts:
                    item.reject("idempotency_key", _reused(item.prepared.notification_id, "before"))
            raise BulkRejected(_atomic_outcomes(items)) from None
        for item in to_start:
            assert item.prepared is not None
            nid = item.prepared.notification_id
            if nid in accepted.conflicts:
                item.reject("idempotency_key", _reused(nid, "before"))
            else:
                item.done("existed" if nid in accepted.existed else "accepted")
        problem = await self._start_fanout(bulk_id)
        if problem is not None:
            reason = f"the bulk's fan-out could not be started ({problem}); nothing was kept"
            if await self.store.release_bulk(bulk_id, accepted.claimed, reason):
                for item in to_start:
                    if item.outcome is not None and item.outcome.outcome == "accepted":
                        item.done("failed", reason)
        return bulk_id

    async def _start_fanout(self, bulk_id: str) -> str | None:
        """Starts `bulk/<bulk_id>`, retrying (the id makes a repeat a no-op); None once it is
        started, else what the last attempt answered."""
        problem = ""
        for delay in (0.0, *FANOUT_START_DELAYS):
            await asyncio.sleep(delay)
            try:
                await self.temporal.start_workflow(
                    BulkStartWorkflow.run,
                    BulkStartInput(bulk_id=bulk_id),
                    id=bulk_workflow_id(bulk_id),
                    task_queue=bulk_queue(self.settings.task_queue),
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    static_summary=f"bulk {bulk_id}: starting its recipients' runs",
                )
                return None
            except WorkflowAlreadyStartedError:
                return None  # an earlier attempt started it, and it has finished already
            except Exception as e:  # an RPC error, a timeout: retried, then reported
                problem = f"{type(e).__name__}: {e}"
        return problem

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


_OUTCOMES: tuple[Outcome, ...] = ("started", "accepted", "existed", "rejected", "failed")


def _reused(key: str, when: str) -> str:
    return (
        f"idempotency key {key!r} was already used {when} for a different request;"
        " use a new key, or send the same request to get the same notification"
    )


def _check_channels(req: NotificationRequest, template: Template) -> None:
    for channel in [*(req.channels or []), *(req.fallback or [])]:
        if channel not in template.channels:
            supported = ", ".join(c.value for c in template.channels)
            raise InvalidRequest(
                "channels" if channel in (req.channels or []) else "fallback",
                f"template {template.id!r} does not support {channel.value}"
                f" (it supports {supported})",
            )


def _parse_recipients(
    recipients: Sequence[str | Recipient | dict[str, Any]],
    shared: NotificationRequest,
    key: str | None,
) -> tuple[list[_Item], dict[int, NotificationRequest]]:
    """Each recipient's own request (the shared one with its user, data and key); a recipient
    that does not parse is rejected on its own, naming its field."""
    base = shared.model_dump(exclude={"user_id", "idempotency_key"})
    items: list[_Item] = []
    requests: dict[int, NotificationRequest] = {}
    for i, given in enumerate(recipients):
        plain = isinstance(given, str)
        item = _Item(i, "", f"user_ids[{i}]" if plain else f"recipients[{i}]", plain)
        items.append(item)
        try:
            recipient = (
                Recipient(user_id=given)
                if isinstance(given, str)
                else Recipient.model_validate(
                    given.model_dump() if isinstance(given, Recipient) else given
                )
            )
        except ValidationError as e:
            error = InvalidRequest.from_validation(e)
            item.user_id = str(given if plain else getattr(given, "get", lambda _: "")("user_id"))
            item.reject(error.field, error.reason)
            continue
        item.user_id = recipient.user_id
        own_key = recipient.idempotency_key or (f"{key}.{recipient.user_id}" if key else None)
        data = base["data"] if recipient.data is None else {**base["data"], **recipient.data}
        try:
            requests[i] = NotificationRequest.model_validate(
                {**base, "data": data, "user_id": recipient.user_id, "idempotency_key": own_key}
            )
        except ValidationError as e:
            error = InvalidRequest.from_validation(e)
            item.reject(error.field, error.reason)
    return items, requests


def optimal_window_end(req: NotificationRequest, now: datetime) -> datetime | None:
    """The latest send time of a `send_at="optimal"` request (None for any other), checked
    at the edge: a bad window is an InvalidRequest naming its field."""
    if req.send_at != "optimal":
        return None
    try:
        return send_time.window_end(
            now=now,
            scheduled_at=req.scheduled_at,
            expires_at=req.expires_at,
            within=req.optimal_within,
            latest=req.optimal_latest,
        )
    except send_time.WindowError as e:
        raise InvalidRequest(e.field, e.reason) from e


class _RenderCheck:
    """Renders each (channel, locale, data, user attributes) once: a bulk with shared data
    renders once per channel, locale and set of attributes, not once per recipient. Templates
    may read `user.attributes`, and a missing one is an error, so users with other attributes
    are checked apart; fields every user has (id, email, timezone) cannot make a render fail."""

    def __init__(self, template: Template, now: datetime) -> None:
        self._template = template
        self._now = now
        self._seen: dict[tuple[Channel, str, str, str], str | None] = {}

    async def check(self, req: NotificationRequest, user: User) -> str | None:
        template = self._template
        data_key = json.dumps(req.data, sort_keys=True, default=str)
        attributes = json.dumps(user.attributes, sort_keys=True, default=str)
        for channel in dict.fromkeys([*(req.channels or template.channels), *(req.fallback or [])]):
            key = (channel, user.locale, data_key, attributes)
            if key not in self._seen:
                try:
                    await rendering.render_async(
                        template, channel, req.data, locale=user.locale, user=user, at=self._now
                    )
                    self._seen[key] = None
                except rendering.TemplateError as e:
                    self._seen[key] = f"{e.reason} (template {template.id}, {e.field})"
            problem = self._seen[key]
            if problem is not None:
                return problem
        return None


def _atomic_outcomes(items: list[_Item]) -> list[RecipientOutcome]:
    """Every recipient's verdict for an atomic bulk that was refused."""
    out = []
    for item in items:
        if item.outcome is not None and item.outcome.field is not None:
            out.append(item.outcome)
        else:
            out.append(
                RecipientOutcome(
                    index=item.index,
                    user_id=item.user_id,
                    outcome="rejected",
                    reason="not started: another recipient was rejected (atomic)",
                )
            )
    return out


__all__ = [
    "BULK_START_CONCURRENCY",
    "MAX_BULK",
    "BulkMixin",
    "BulkRejected",
    "BulkResult",
    "NotificationRef",
    "Recipient",
    "RecipientOutcome",
]
