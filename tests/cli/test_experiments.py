"""`tidings experiment ...` against the dev server and the real worker."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack
from workflows import search_attributes as sa

TEST_YAML = """\
id: cli_subject
template_id: welcome
data: {app_name: MyApp, user_name: friend}
variants:
  - {name: plain, control: true, channels: [in_app]}
  - {name: warm, channels: [in_app], data: {user_name: dear friend}}
split: [50, 50]
metric: opened
attribution_window: 24h
check_every: 1h
max_duration: 7d
"""


async def test_create_enroll_results_stop_list(
    cli: Cli, stack: Stack, tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    path = tmp_path / "test.yaml"
    path.write_text(TEST_YAML, encoding="utf-8")
    assert "experiment cli_subject running" in ok(await cli("experiment", "create", str(path)))

    enrolled = ok(await cli("experiment", "enroll", "cli_subject", "user_001", "user_002"))
    assert "user_001" in enrolled and "exp-cli_subject-user_001" in enrolled
    again = ok(await cli("experiment", "enroll", "cli_subject", "user_001"))
    assert "already enrolled" in again

    # The notification carries the test and its arm as search attributes.
    child = await dev_env.client.get_workflow_handle(
        "notification/exp-cli_subject-user_001"
    ).describe()
    attributes = child.typed_search_attributes
    assert attributes.get(sa.EXPERIMENT) == "cli_subject"
    assert attributes.get(sa.VARIANT) in ("plain", "warm")

    shown = ok(await cli("experiment", "results", "cli_subject"))
    assert "plain" in shown and "warm" in shown and "running" in shown
    stopped = ok(await cli("experiment", "stop", "cli_subject", "--reason", "demo over"))
    assert "stopped" in stopped and "demo over" in stopped
    one_line_error(
        await cli("experiment", "enroll", "cli_subject", "user_002"), "cli_subject", "finished"
    )
    listed = ok(await cli("experiment", "list"))
    assert "cli_subject" in listed and "stopped" in listed


async def test_bad_file_is_one_line_naming_the_field(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(TEST_YAML.replace("split: [50, 50]", "split: [50, 40]"), encoding="utf-8")
    one_line_error(await cli("experiment", "create", str(path)), "split:", "sum to 100")
    one_line_error(await cli("experiment", "results", "nope"), "experiment 'nope' not found")
