"""`tidings broadcast ...` against the dev server and the real worker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack


async def test_send_follow_status_list_and_refusals(cli: Cli, stack: Stack) -> None:
    sent = ok(
        await cli(
            "broadcast", "send", "welcome", "user_001", "user_002",
            "--data", "app_name=MyApp", "--data", "user_name=friend",
            "--channel", "in_app", "--id", "cli_news", "--follow",
        )
    )  # fmt: skip
    assert "broadcast cli_news running" in sent
    assert "completed" in sent and "in_app" in sent
    status = ok(await cli("broadcast", "status", "cli_news"))
    assert "completed" in status and "2 recipients" in status
    assert "cli_news" in ok(await cli("broadcast", "list"))
    one_line_error(await cli("broadcast", "pause", "cli_news"), "cannot pause", "completed")
    one_line_error(
        await cli("broadcast", "send", "welcome", "--segment", "vips", "--data", "app_name=A",
                  "--data", "user_name=B"),
        "audience.segment",
        "no segment 'vips'",
    )  # fmt: skip
    one_line_error(
        await cli("broadcast", "send", "welcome", "user_001", "--channel", "sms",
                  "--data", "app_name=A", "--data", "user_name=B"),
        "channels",
        "does not support sms",
    )  # fmt: skip
    one_line_error(await cli("broadcast", "send", "welcome"), "audience")
    assert await stack.store.list_broadcasts() != []
    assert [b.id for b in await stack.store.list_broadcasts()] == ["cli_news"]


async def test_an_experiment_file_is_checked_before_anything_starts(
    cli: Cli, stack: Stack, tmp_path: Path
) -> None:
    test = tmp_path / "test.json"
    test.write_text(
        json.dumps(
            {
                "share": 0.2,
                "variants": [
                    {"name": "plain", "control": True},
                    {"name": "warm", "template_version": 42},
                ],
            }
        )
    )
    args = ("broadcast", "send", "welcome", "user_001", "--data", "app_name=A",
            "--data", "user_name=B", "--id", "cli_test", "--experiment", str(test))  # fmt: skip
    one_line_error(await cli(*args), "experiment.variants[1].template_version", "has no version 42")
    one_line_error(
        await cli(*args, "--experiment-share", "1"), "experiment.share", "between 0 and 1"
    )
    assert await stack.store.get_broadcast("cli_test") is None
