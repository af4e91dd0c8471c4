"""DigestWorkflow: one user's events for one digest key, sent as one notification per batch
(`digest/<user>/<key>`, started by signal-with-start).

The front door stores each event first (unique per user, key and event id) and then signals the
event's row number here, so this run keeps counters only: a row number at or below the highest
seen is a repeat. A batch closes when its window ends (or at the next time of the digest's
calendar), when `max_events` have arrived, or on a flush. Closing seals the batch in the database
(the waiting rows get the batch number in one UPDATE) and then starts the batch's notification
under an id made of user, key and batch number: an event stored after the seal waits for the next
batch, and a retried send finds the notification it started. With nothing waiting the run ends;
the next event starts a new run, which reads what waits (and the next batch number) from the
database first, so an event whose signal met a finishing run is never left behind.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.digest import DigestActivities
    from activities.errors import NOT_FOUND
    from tidings.digests import DigestDefinition, next_occurrence
    from workflows.digest_io import (
        DigestEventSignal,
        DigestInput,
        DigestState,
        DigestStatus,
        FlushSignal,
        OpenDigestInput,
        OpenDigestOutput,
        SealInput,
        SendDigestInput,
    )

STORE_TIMEOUT = timedelta(seconds=30)
SEND_TIMEOUT = timedelta(seconds=30)
# No attempt limit: a batch that cannot be sealed or sent yet waits (its events stay stored);
# only a digest or template that no longer exists stops the run.
DIGEST_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=[NOT_FOUND]
)


@workflow.defn(name="DigestWorkflow")
class DigestWorkflow:
    @workflow.init
    def __init__(self, input: DigestInput) -> None:
        self._input = input
        self._state = input.state or DigestState()
        self._flush = False
        self._running = True

    # --- handlers -------------------------------------------------------------------------------

    @workflow.signal(name="event")
    def event(self, signal: DigestEventSignal) -> None:
        state = self._state
        if signal.seq > state.max_seq:
            state.max_seq = signal.seq
            state.pending += 1
            state.received += 1
        else:
            state.repeats += 1  # a repeated event id (or a repeated signal): counted once

    @workflow.signal(name="flush")
    def flush(self, signal: FlushSignal) -> None:
        self._flush = True

    @workflow.query(name="status")
    def status(self) -> DigestStatus:
        state = self._state
        return DigestStatus(
            user_id=self._input.user_id,
            key=self._input.key,
            running=self._running,
            pending=state.pending,
            next_batch=state.batch,
            batches_sent=state.batches_sent,
            events_sent=state.events_sent,
            received=state.received,
            repeats=state.repeats,
            closes_at=state.closes_at,
            last_notification_id=state.last_notification_id,
            runs=state.runs,
        )

    # --- main -----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: DigestInput) -> DigestStatus:
        state = self._state
        opened = await self._open()
        definition = opened.definition
        fresh = True  # the counters were just merged with the database's
        while True:
            if state.pending == 0 and not self._flush:
                if not fresh:
                    opened = await self._open()
                    fresh = True
                if state.pending == 0:
                    break  # nothing waits: done; the next event starts a new run
            if self._over_budget() and not self._flush:
                await self._continue_as_new()  # batches closing back to back (max_events)
            now = workflow.now()
            if state.closes_at is None:
                state.closes_at = self._closes_at(definition, opened.timezone, now)
            if not self._ready(definition) and state.closes_at > now:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._ready(definition) or self._over_budget(),
                        timeout=state.closes_at - now,
                        timeout_summary="batch window closes",
                    )
                if not self._ready(definition) and workflow.now() < state.closes_at:
                    await self._continue_as_new()  # over budget mid-window
            await self._close_batch(definition)
            fresh = False
        self._running = False
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def _ready(self, definition: DigestDefinition) -> bool:
        return self._flush or self._state.pending >= definition.max_events

    def _closes_at(self, definition: DigestDefinition, timezone: str, now: datetime) -> datetime:
        if definition.schedule is not None:
            return next_occurrence(definition.schedule, now, timezone)
        return now + timedelta(seconds=definition.window_seconds)

    async def _open(self) -> OpenDigestOutput:
        """Merge the counters with what the database holds: rows stored by events whose signal
        reached an earlier, finishing run, and the batch numbers used by earlier runs."""
        opened = await workflow.execute_activity_method(
            DigestActivities.open_digest,
            OpenDigestInput(user_id=self._input.user_id, key=self._input.key),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=DIGEST_RETRY,
            summary="read waiting events",
        )
        state = self._state
        state.pending = max(state.pending, opened.pending)
        state.max_seq = max(state.max_seq, opened.max_seq)
        state.batch = max(state.batch, opened.next_batch)
        return opened

    async def _close_batch(self, definition: DigestDefinition) -> None:
        state, key, user_id = self._state, self._input.key, self._input.user_id
        batch = state.batch
        counted = state.pending
        sealed = await workflow.execute_activity_method(
            DigestActivities.seal_digest,
            SealInput(user_id=user_id, key=key, batch=batch),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=DIGEST_RETRY,
            summary=f"seal batch {batch}",
        )
        if sealed.total > 0:
            sent = await workflow.execute_activity_method(
                DigestActivities.send_digest,
                SendDigestInput(
                    user_id=user_id,
                    key=key,
                    batch=batch,
                    task_queue_base=self._input.task_queue_base,
                ),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=DIGEST_RETRY,
                summary=f"send batch {batch}: {sealed.total} events",
            )
            state.batches_sent += 1
            state.events_sent += sent.total
            state.last_notification_id = sent.notification_id
            state.batch = batch + 1
        # Events signalled while the batch was sealed and sent wait for the next one.
        state.pending = max(0, state.pending - counted)
        state.closes_at = None
        self._flush = False

    def _over_budget(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.event_budget
        )

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.runs += 1
        workflow.continue_as_new(self._input.model_copy(update={"state": self._state}))
