"""Every recorded NotificationWorkflow, ExperimentWorkflow and BroadcastWorkflow history must still
replay against today's code.

A failure here means a change to the workflow would break notifications already in flight: put
the new behaviour behind `workflow.patched(...)` instead, and record a new history beside the old
ones with `python -m tests.replay.record`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tidings.payload_keys import new_key_entry, parse_keys
from worker.main import workflow_runner
from workflows.broadcast import BroadcastWorkflow
from workflows.bulk import BulkStartWorkflow
from workflows.converter import DATA_CONVERTER, with_keys
from workflows.digest import DigestWorkflow
from workflows.experiment import ExperimentWorkflow
from workflows.notification import (
    FINAL_BY_DELIVERY_PATCH,
    FOLDED_RECORDS_PATCH,
    IN_APP_LOCAL_PATCH,
    IN_APP_WITH_PLAN_PATCH,
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
    # v10: the last delivery writes the final status (FINAL_BY_DELIVERY_PATCH).
    v10 = {f"notification_v10_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v10 |= {"notification_v10_split", "notification_v10_optimal"}
    # v11: the plan's local activity delivers in-app (IN_APP_WITH_PLAN_PATCH).
    v11 = {f"notification_v11_{n}" for n in ("sent", "cancelled", "quiet", "fallback", "escalated")}
    v11 |= {"notification_v11_split", "notification_v11_optimal"}
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
    assert v1 | v2 | v3 | v4 | v5 | v6 | v7 | v8 | v9 | v10 | v11 | long_lived <= names


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
        # The worker's own sandbox (worker/sandbox.py), as the histories are replayed in it.
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


# The v9 runs that sent on in-app: as a first-round channel, a fallback, an escalation's first.
IN_APP_V9 = [f"notification_v9_{n}" for n in ("sent", "quiet", "fallback", "escalated")]


def _history(name: str) -> WorkflowHistory:
    path = Path(__file__).parent / "histories" / f"{name}.json"
    return WorkflowHistory.from_json(name, path.read_text(encoding="utf-8"))


def _local_activities(history: WorkflowHistory) -> list[dict[str, Any]]:
    return [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


def _patches(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


@pytest.mark.parametrize("name", IN_APP_V9)
def test_v9_sends_in_app_as_a_local_activity(name: str) -> None:
    history = _history(name)
    local = _local_activities(history)
    assert "deliver" in [m["activity_type"] for m in local], local
    queues = [
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert not [q for q in queues if q.endswith("-in_app")], queues
    patches = _patches(history)
    # The new patch stands for the ones before it: one marker for all of them.
    assert IN_APP_LOCAL_PATCH in patches, patches
    assert not {LEAN_RECORDS_PATCH, FOLDED_RECORDS_PATCH} & set(patches), patches


# v10 runs whose channels all got through (email + in-app; email + a retried webhook; email at
# the optimal time), and runs where a channel failed (the quiet run's email bounced; the fallback
# run's email failed before in-app went).
PLAIN_V10 = [f"notification_v10_{n}" for n in ("sent", "split", "optimal")]
FAILED_V10 = [f"notification_v10_{n}" for n in ("quiet", "fallback")]


@pytest.mark.parametrize("name", PLAIN_V10 + FAILED_V10)
def test_v10_final_record_only_when_a_channel_failed(name: str) -> None:
    """FINAL_BY_DELIVERY_PATCH: the last delivery's transaction writes the final status, so a
    run whose channels all got through makes no final record after its plan; one with a failed
    channel (its row only the run writes) still does."""
    history = _history(name)
    local = [m["activity_type"] for m in _local_activities(history)]
    last_plan = len(local) - 1 - local[::-1].index("plan_delivery")
    recorded = "record_notification" in local[last_plan:]
    assert recorded is (name in FAILED_V10), local
    patches = _patches(history)
    # One marker stands for every patch before it, and the SDK upserts one change version.
    assert FINAL_BY_DELIVERY_PATCH in patches, patches
    assert not {IN_APP_LOCAL_PATCH, LEAN_RECORDS_PATCH, FOLDED_RECORDS_PATCH} & set(patches)
    versions = [
        e
        for e in history.events
        if "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(versions) == len(patches), patches


# v11 runs that sent in-app in their first round (the plan delivered it; the quiet run's plan
# after its deferral), and the run whose in-app was a fallback after the email failed (a local
# activity of its own, as before).
IN_APP_WITH_PLAN_V11 = [f"notification_v11_{n}" for n in ("sent", "escalated", "quiet")]


@pytest.mark.parametrize("name", [*IN_APP_WITH_PLAN_V11, "notification_v11_fallback"])
def test_v11_the_plan_delivers_a_first_round_in_app(name: str) -> None:
    """IN_APP_WITH_PLAN_PATCH: a first-round in-app send is made by the plan's local activity,
    so the run has no `deliver` local activity of its own; a fallback to in-app still has one.
    The new patch stands for every patch before it: one marker, one change-version upsert."""
    history = _history(name)
    local = [m["activity_type"] for m in _local_activities(history)]
    assert ("deliver" in local) is (name not in IN_APP_WITH_PLAN_V11), local
    patches = _patches(history)
    assert IN_APP_WITH_PLAN_PATCH in patches, patches
    assert FINAL_BY_DELIVERY_PATCH not in patches, patches
