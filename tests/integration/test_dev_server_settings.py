"""The dev server's settings (starter/dev/devserver.py) reach the server, and a history file
written before one partition per task queue keeps reading the partitions it may hold tasks in."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import ListTaskQueuePartitionsRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.trivial import TrivialWorkflow, noop
from starter.dev.devserver import (
    DRAINING_PARTITIONS,
    SINGLE_PARTITION,
    TemporalDevServer,
    dynamic_config,
    mark_if_new,
    server_flags,
    single_partition_mark,
)


def _dynamic_values(flags: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for flag, value in itertools.pairwise(flags):
        if flag == "--dynamic-config-value":
            key, _, raw = value.partition("=")
            values[key] = json.loads(raw)
    return values


async def test_the_dev_server_serves_one_partition_per_task_queue(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    queue = f"partitions-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[TrivialWorkflow], activities=[noop]):
        await client.execute_workflow(TrivialWorkflow.run, 1, id=queue, task_queue=queue)
        partitions = await client.workflow_service.list_task_queue_partitions(
            ListTaskQueuePartitionsRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue)
            )
        )
    assert len(partitions.workflow_task_queue_partitions) == 1
    assert len(partitions.activity_task_queue_partitions) == 1


def test_throwaway_and_new_history_files_get_one_partition(tmp_path: Path) -> None:
    assert _dynamic_values(server_flags()) == SINGLE_PARTITION
    db_file = tmp_path / "data" / "temporal.db"
    mark_if_new(db_file)
    assert single_partition_mark(db_file).exists()
    db_file.write_bytes(b"")  # what the server creates once started
    assert dynamic_config(db_file) == SINGLE_PARTITION
    mark_if_new(db_file)  # a later start keeps the mark
    assert dynamic_config(db_file) == SINGLE_PARTITION


def test_a_history_file_from_before_keeps_reading_every_partition(tmp_path: Path) -> None:
    db_file = tmp_path / "temporal.db"
    db_file.write_bytes(b"")  # written by a version that ran four partitions: no mark
    mark_if_new(db_file)
    assert not single_partition_mark(db_file).exists()
    server = TemporalDevServer(
        db_file=db_file,
        log_file=tmp_path / "temporal.log",
        port=7233,
        ui_port=8233,
        namespace="default",
        search_attributes=[],
    )
    assert _dynamic_values(server.command()) == DRAINING_PARTITIONS
    assert DRAINING_PARTITIONS["matching.numTaskqueueWritePartitions"] == 1
