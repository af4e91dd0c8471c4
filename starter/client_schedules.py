"""Recurring sends in the Python API: Temporal Schedules whose every firing is one ordinary
notification (or a flush of one user's digest, or a broadcast), in the schedule's own time zone.

    await tidings.create_schedule(
        schedule_id="weekly-report", cron=["0 9 * * mon"], time_zone="Europe/Berlin",
        notification={"user_id": "u1", "template_id": "weekly_report", "data": {...}},
    )

Everything is checked before the schedule is made (the cron fields, calendars, time zone, user,
template and rendering, or the digest), so bad input creates nothing. The notification is prepared
once (its template version is pinned at creation); each firing's notification id is
`schedule:<id>:<scheduled time>` (see `tidings.recurring.run_notification_id`); a broadcast
action is checked like `Tidings.broadcast` and each firing's broadcast id is
`sched-<id>-<scheduled time>` (`run_broadcast_id`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleHandle,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from starter.client_broadcast_models import BroadcastRequest
from tidings.errors import Conflict, InvalidRequest, NotFound, TidingsError
from tidings.recurring import CalendarSpec, RecurringSpec, describe_action
from tidings.settings import Settings
from tidings.store import Store
from workflows.broadcast_io import BroadcastInput
from workflows.digest_io import ScheduledSendInput
from workflows.io import NotificationInput
from workflows.scheduled import ScheduledSendWorkflow

# A firing missed while the service was down is still sent within this long; older ones are
# skipped rather than sent in a burst when it comes back.
CATCHUP_WINDOW = timedelta(hours=1)
WORKFLOW = "ScheduledSendWorkflow"


class SchedulesUnsupported(TidingsError):
    """The Temporal server answers Schedule calls with UNIMPLEMENTED (the time-skipping test
    server does): recurring sends need a dev server or a cluster."""


def _unsupported(e: RPCError) -> SchedulesUnsupported | None:
    if e.status is RPCStatusCode.UNIMPLEMENTED:
        return SchedulesUnsupported(
            "this Temporal server does not implement Schedules; use a dev server or a cluster"
        )
    return None


class ScheduleView(BaseModel):
    schedule_id: str
    action: str  # e.g. "notify u1 with weekly_report"
    cron: list[str]
    calendars: list[dict[str, Any]]
    time_zone: str
    paused: bool
    note: str = ""
    next_runs: list[datetime]
    recent_runs: list[datetime]
    runs: int = 0  # firings so far


def _calendar(spec: CalendarSpec) -> ScheduleCalendarSpec:
    r = {
        name: [ScheduleRange(start=a, end=b, step=s) for a, b, s in parts]
        for name, parts in spec.ranges().items()
    }
    return ScheduleCalendarSpec(
        second=r["second"],
        minute=r["minute"],
        hour=r["hour"],
        day_of_month=r["day_of_month"],
        month=r["month"],
        day_of_week=r["day_of_week"],
    )


class SchedulesClient:
    """Mixed into `starter.client.Tidings`."""

    settings: Settings
    store: Store
    temporal: Client
    # Tidings' own request check (user, template, channels, rendering).
    _prepare: Callable[..., Awaitable[NotificationInput]]
    # Tidings' own broadcast check (template, channels, rendering, audience).
    _prepare_broadcast: Callable[[BroadcastRequest], Awaitable[BroadcastInput]]

    async def create_schedule(
        self, spec: RecurringSpec | dict[str, Any] | None = None, /, **fields: Any
    ) -> ScheduleView:
        raw = spec.model_dump() if isinstance(spec, RecurringSpec) else (spec or fields)
        try:
            parsed = RecurringSpec.model_validate(raw)
        except ValidationError as e:
            raise InvalidRequest.from_validation(e) from e
        problem = parsed.problem()
        if problem is not None:
            raise InvalidRequest(*problem)
        action = ScheduledSendInput(
            schedule_id=parsed.schedule_id, task_queue_base=self.settings.task_queue
        )
        if parsed.notification is not None:
            try:
                prepared = await self._prepare(parsed.notification)
            except InvalidRequest as e:
                raise InvalidRequest(f"notification.{e.field}", e.reason) from e
            action.notification = prepared
        elif parsed.digest is not None:
            if await self.store.get_digest(parsed.digest.key) is None:
                raise InvalidRequest("digest.key", f"no digest {parsed.digest.key!r}")
            if await self.store.get_user(parsed.digest.user_id) is None:
                raise InvalidRequest("digest.user_id", f"no user {parsed.digest.user_id!r}")
            action.digest_user_id, action.digest_key = parsed.digest.user_id, parsed.digest.key
        elif parsed.broadcast is not None:
            b = parsed.broadcast
            try:
                action.broadcast = await self._prepare_broadcast(BroadcastRequest(**b.model_dump()))
            except InvalidRequest as e:
                raise InvalidRequest(f"broadcast.{e.field}", e.reason) from e
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                ScheduledSendWorkflow.run,
                action,
                id=f"scheduled/{parsed.schedule_id}",
                task_queue=self.settings.task_queue,
                static_summary=f"schedule {parsed.schedule_id}: {describe_action(raw)}",
            ),
            spec=ScheduleSpec(
                cron_expressions=parsed.cron,
                calendars=[_calendar(c) for c in parsed.calendars],
                time_zone_name=parsed.time_zone,
            ),
            policy=SchedulePolicy(catchup_window=CATCHUP_WINDOW),
            state=ScheduleState(note=parsed.note, paused=parsed.paused),
        )
        try:
            await self.temporal.create_schedule(
                parsed.schedule_id, schedule, memo={"tidings": parsed.model_dump(mode="json")}
            )
        except ScheduleAlreadyRunningError as e:
            raise Conflict(
                f"schedule {parsed.schedule_id!r} exists; delete it first", field="schedule_id"
            ) from e
        except RPCError as e:
            if e.status is RPCStatusCode.INVALID_ARGUMENT:  # the server's own checks
                raise InvalidRequest("cron" if parsed.cron else "calendars", e.message) from e
            raise _unsupported(e) or e from e
        return await self.describe_schedule(parsed.schedule_id)

    async def describe_schedule(self, schedule_id: str) -> ScheduleView:
        handle = self.temporal.get_schedule_handle(schedule_id)
        try:
            d = await handle.describe()
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:
                raise NotFound("schedule", schedule_id) from e
            raise _unsupported(e) or e from e
        action = d.schedule.action
        if not isinstance(action, ScheduleActionStartWorkflow) or action.workflow != WORKFLOW:
            raise NotFound("schedule", schedule_id)  # someone else's schedule in the namespace
        stored = await d.memo_value("tidings", {})
        spec = d.schedule.spec
        return ScheduleView(
            schedule_id=schedule_id,
            action=describe_action(stored),
            cron=list(stored.get("cron", [])),
            calendars=list(stored.get("calendars", [])),
            time_zone=spec.time_zone_name or "UTC",
            paused=d.schedule.state.paused,
            note=d.schedule.state.note or "",
            next_runs=list(d.info.next_action_times),
            recent_runs=[a.scheduled_at for a in d.info.recent_actions],
            runs=d.info.num_actions,
        )

    async def list_schedules(self) -> list[ScheduleView]:
        ids = []
        try:
            async for listed in await self.temporal.list_schedules():
                listed_schedule = listed.schedule
                if (
                    listed_schedule is not None
                    and getattr(listed_schedule.action, "workflow", None) == WORKFLOW
                ):
                    ids.append(listed.id)
        except RPCError as e:
            raise _unsupported(e) or e from e
        return [await self.describe_schedule(i) for i in sorted(ids)]

    async def pause_schedule(self, schedule_id: str, note: str = "paused") -> ScheduleView:
        await (await self._schedule(schedule_id)).pause(note=note)
        return await self.describe_schedule(schedule_id)

    async def resume_schedule(self, schedule_id: str, note: str = "resumed") -> ScheduleView:
        await (await self._schedule(schedule_id)).unpause(note=note)
        return await self.describe_schedule(schedule_id)

    async def trigger_schedule(self, schedule_id: str) -> ScheduleView:
        """Fire once now (also while paused); the run counts as scheduled at this moment."""
        await (await self._schedule(schedule_id)).trigger()
        return await self.describe_schedule(schedule_id)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Stop future firings; notifications already sent are untouched."""
        await (await self._schedule(schedule_id)).delete()

    async def _schedule(self, schedule_id: str) -> ScheduleHandle:
        await self.describe_schedule(schedule_id)  # NotFound when not one of ours
        return self.temporal.get_schedule_handle(schedule_id)
