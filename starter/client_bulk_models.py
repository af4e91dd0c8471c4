"""What a bulk (`Tidings.notify_many`) takes and answers: a recipient with its own data or key,
each recipient's outcome, the whole bulk's result, and the refusal of an atomic bulk."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tidings.errors import InvalidRequest
from tidings.models import Identifier, Model

Outcome = Literal["started", "accepted", "existed", "rejected", "failed"]

_OUTCOMES: tuple[Outcome, ...] = ("started", "accepted", "existed", "rejected", "failed")


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
