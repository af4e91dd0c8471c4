"""Every recorded NotificationWorkflow, ExperimentWorkflow and BroadcastWorkflow history must still
replay against today's code.

A failure here means a change to the workflow would break notifications already in flight: put
the new behaviour behind `workflow.patched(...)` instead, and record a new history beside the old
ones with `python -m tests.replay.record`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tidings.payload_keys import new_key_entry, parse_keys
from workflows.broadcast import BroadcastWorkflow
from workflows.bulk import BulkStartWorkflow
from workflows.converter import DATA_CONVERTER, with_keys
from workflows.digest import DigestWorkflow
from workflows.experiment import ExperimentWorkflow
from workflows.notification import (
    FOLDED_RECORDS_PATCH,
    IN_APP_LOCAL_PATCH,
    LEAN_RECORDS_PATCH,
    NotificationWorkflow,
)
from workflows.scheduled import ScheduledSendWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_checked_in() -> None:
    names = {p.stem for p in HISTORIES}
    v1 = {"notification_v1_sent", "notification_v1_cancelled", "notification_v1_quiet"}
    v2 = {f"notification_v2_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v3 = {f"notification_v3_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v3.add("notification_v3_split")
    v4 = {f"notification_v4_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v4.add("notification_v4_split")
    v5 = {f"notification_v5_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v5 |= {"notification_v5_split", "notification_v5_optimal"}  # send_at="optimal"
    # v6: the last channel to land is recorded with the status (LAST_CHANNEL_WITH_STATUS_PATCH).
    v6 = {f"notification_v6_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v6.add("notification_v6_split")
    # v7: the plan and each delivery record what they did (FOLDED_RECORDS_PATCH).
    v7 = {f"notification_v7_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v7 |= {"notification_v7_split", "notification_v7_optimal"}
    # v8: records write only what changed, TidingsStatus once at the end (LEAN_RECORDS_PATCH).
    v8 = {f"notification_v8_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v8 |= {"notification_v8_split", "notification_v8_optimal"}
    # v9: in-app is a local activity of the run's own worker (IN_APP_LOCAL_PATCH).
    v9 = {f"notification_v9_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v9 |= {"notification_v9_split", "notification_v9_optimal"}
    experiments = {"experiment_v1_first_run", "experiment_v1_decided"}
    broadcasts = {f"broadcast_v1_{n}" for n in ("first_run", "completed", "cancelled")}
    # v2: a failed run records "failed", pause/resume upsert TidingsStatus (both patched).
    broadcasts |= {f"broadcast_v2_{n}" for n in ("first_run", "completed", "cancelled", "failed")}
    # v3: an experiment on a share of the audience first (record_broadcast_experiment.py).
    broadcasts |= {f"broadcast_v3_experiment_{n}" for n in ("first_run", "completed", "cancelled")}
    digests = {"digest_v1_window", "digest_v1_first_run", "digest_v1_continued"}
    scheduled = {f"scheduled_v1_{n}" for n in ("notification", "repeat", "digest")}
    scheduled.add("scheduled_v2_broadcast")  # a broadcast action (a new branch)
    bulks = {f"bulk_v1_{n}" for n in ("one_page", "first_run", "last_run")}
    long_lived = experiments | broadcasts | digests | scheduled | bulks
    assert v1 | v2 | v3 | v4 | v5 | v6 | v7 | v8 | v9 | long_lived <= names


# Workers with payload keys replay these plaintext histories too (the codec passes through
# payloads written before encryption was on).
CONVERTERS = {"plain": DATA_CONVERTER, "with-keys": with_keys(parse_keys(new_key_entry("r1")))}
# A history carries no workflow id, and ScheduledSendWorkflow reads its scheduled time from the
# time a schedule appends to the id when the search attribute is absent (tests.replay.record_digest
# starts them directly): replay them under the ids they ran with.
WORKFLOW_IDS = {
    "scheduled_v1_notification": "scheduled/replay-2031-03-30T07:00:00Z",
    "scheduled_v1_repeat": "scheduled/replay-2031-03-30T07:00:00Z",
    "scheduled_v1_digest": "scheduled/replay-digest-2031-03-30T07:00:00Z",
    "scheduled_v2_broadcast": "scheduled/replay-bc-2031-03-30T07:00:00Z",
}


@pytest.mark.parametrize("converter", CONVERTERS, ids=list(CONVERTERS))
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path, converter: str) -> None:
    wf_id = WORKFLOW_IDS.get(path.stem, path.stem)
    history = WorkflowHistory.from_json(wf_id, path.read_text(encoding="utf-8"))
    replayer = Replayer(
        workflows=[
            NotificationWorkflow,
            ExperimentWorkflow,
            BroadcastWorkflow,
            DigestWorkflow,
            ScheduledSendWorkflow,
            BulkStartWorkflow,
        ],
        data_converter=CONVERTERS[converter],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


# The v9 runs that sent on in-app: as a first-round channel, a fallback, an escalation's first.
IN_APP_V9 = [f"notification_v9_{n}" for n in ("sent", "quiet", "fallback", "escalated")]


@pytest.mark.parametrize("name", IN_APP_V9)
def test_v9_sends_in_app_as_a_local_activity(name: str) -> None:
    path = Path(__file__).parent / "histories" / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text(encoding="utf-8"))
    local = [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert "deliver" in [m["activity_type"] for m in local], local
    queues = [
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert not [q for q in queues if q.endswith("-in_app")], queues
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    # The new patch stands for the ones before it: one marker for all of them.
    assert IN_APP_LOCAL_PATCH in patches, patches
    assert not {LEAN_RECORDS_PATCH, FOLDED_RECORDS_PATCH} & set(patches), patches
