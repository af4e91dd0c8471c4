"""A bulk's checks that touch no store: the shared request's channels and send window, each
recipient's own request and render, and each recipient's verdict (`_Item`) as the bulk goes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from starter.client_bulk_models import Outcome, Recipient, RecipientOutcome
from tidings import rendering, send_time
from tidings.errors import InvalidRequest
from tidings.models import Channel, NotificationRequest, Template, User
from workflows.io import NotificationInput
from workflows.queues import workflow_id


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


def _reused(key: str, when: str) -> str:
    return (
        f"idempotency key {key!r} was already used {when} for a different request;"
        " use a new key, or send the same request to get the same notification"
    )


def check_channels(req: NotificationRequest, template: Template) -> None:
    """The request's channels and fallback must be the template's (one request or a bulk's
    shared one): InvalidRequest naming `channels` or `fallback`."""
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
            # Echo what the caller gave, so the rejection can be matched to its recipient; a
            # recipient with no user_id at all is reported with an empty one, not "None".
            raw = given if plain else getattr(given, "get", lambda _: None)("user_id")
            item.user_id = "" if raw is None else str(raw)
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
                    self._seen[key] = e.of_template(template.id)
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
