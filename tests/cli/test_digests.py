"""`tidings digest ...` against the dev server and the real worker: bad input is one line
naming the field, and events flushed by hand go out as one digest."""

from __future__ import annotations

import asyncio

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack

TEMPLATE = {
    "id": "comment_digest",
    "channels": ["in_app"],
    "content": {"subject": "{{ total }} new comments", "text": "{{ omitted }} more"},
    "sample_data": {"total": 1, "omitted": 0},
}


async def test_register_event_flush_status(cli: Cli, stack: Stack) -> None:
    await stack.tidings.register_template(TEMPLATE)
    one_line_error(
        await cli(
            "digest", "register", "comments", "--template", "comment_digest", "--window", "0"
        ),
        "window_seconds",
    )
    one_line_error(await cli("digest", "register", "comments", "--template", "nope"), "template_id")
    one_line_error(
        await cli(
            "digest", "register", "comments", "--template", "comment_digest", "--timezone", "Mars/X"
        ),
        "schedule.timezone",
    )
    one_line_error(
        await cli("digest", "register", "comments", "--template", "comment_digest", "--days", "x"),
        "schedule.days",
    )
    shown = ok(
        await cli(
            "digest",
            "register",
            "daily",
            "--template",
            "comment_digest",
            "--days",
            "mon-fri",
            "--at",
            "09:00",
            "--timezone",
            "Europe/Berlin",
        )
    )
    assert "at 09:00 on mon,tue,wed,thu,fri (Europe/Berlin)" in shown
    ok(await cli("digest", "register", "comments", "--template", "comment_digest"))
    assert "comments" in ok(await cli("digest", "list"))
    one_line_error(await cli("digest", "event", "nope", "user_001", "e1"), "key")
    ok(await cli("digest", "event", "comments", "user_001", "e1", "--data", "by=ann"))
    assert "counted once" in ok(await cli("digest", "event", "comments", "user_001", "e1"))
    ok(await cli("digest", "event", "comments", "user_001", "e2"))
    ok(await cli("digest", "flush", "comments", "user_001"))
    for _ in range(100):
        status = await stack.tidings.digest_status("user_001", "comments")
        if status.batches_sent == 1 and not status.running:
            break
        await asyncio.sleep(0.1)
    assert (status.batches_sent, status.events_sent) == (1, 2)
    assert "events sent" in ok(await cli("digest", "status", "comments", "user_001"))
    sent = await stack.tidings.wait_sent("digest:user_001:comments:1")
    assert sent.status.value == "sent"
