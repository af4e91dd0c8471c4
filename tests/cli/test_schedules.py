"""`tidings schedule ...` against the dev server and the real worker."""

from __future__ import annotations

import uuid

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack


async def test_create_show_pause_trigger_delete(cli: Cli, stack: Stack) -> None:
    sid = f"c-{uuid.uuid4().hex[:8]}"
    base = ["schedule", "create", sid, "--user", "user_001", "--template", "welcome"]
    data = ["--data", "app_name=MyApp", "--data", "user_name=John"]
    one_line_error(await cli(*base, "--cron", "0 25 * * *", *data), "cron")
    one_line_error(await cli(*base, "--cron", "0 9 * * *", "--tz", "Nowhere/X", *data), "time_zone")
    one_line_error(await cli(*base, "--cron", "0 9 * * *"), "notification.data")
    made = ok(await cli(*base, "--cron", "0 9 * * mon-fri", "--tz", "Europe/Berlin", *data))
    assert "Europe/Berlin" in made and "notify user_001 with welcome" in made
    try:
        assert sid in ok(await cli("schedule", "list"))
        assert "yes" in ok(await cli("schedule", "pause", sid))
        ok(await cli("schedule", "resume", sid))
        ok(await cli("schedule", "trigger", sid))
        assert "0 9 * * mon-fri" in ok(await cli("schedule", "show", sid))
    finally:
        ok(await cli("schedule", "delete", sid))
    one_line_error(await cli("schedule", "show", sid), "not found")


async def test_create_a_broadcast_schedule(cli: Cli, stack: Stack) -> None:
    sid = f"cb-{uuid.uuid4().hex[:8]}"
    base = ["schedule", "create", sid, "--template", "welcome", "--cron", "0 9 * * mon"]
    data = ["--data", "app_name=MyApp", "--data", "user_name=John"]
    one_line_error(await cli(*base, "--audience", "segment:nope", *data), "broadcast.audience")
    one_line_error(await cli(*base, *data), "user")  # neither --user nor --audience
    made = ok(await cli(*base, "--audience", "user_001,user_002", *data))
    try:
        assert "broadcast welcome to 2 users" in made
    finally:
        ok(await cli("schedule", "delete", sid))
