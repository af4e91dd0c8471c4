"""`tidings inbox|stats|mail|demo`: reading back what the stack did."""

from __future__ import annotations

import re

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack
from tidings.models import Channel

WELCOME = ("-d", "app_name=MyApp", "-d", "user_name=John")


async def _send_welcome(cli: Cli) -> None:
    ok(await cli("send", "user_001", "welcome", *WELCOME, "--wait"))


async def test_inbox_lists_and_marks_read(cli: Cli, stack: Stack) -> None:
    await _send_welcome(cli)
    [item] = await stack.tidings.inbox("user_001")

    listed = ok(await cli("inbox", "user_001"))
    assert "Welcome to MyApp, John!" in listed and "new" in listed

    ok(await cli("inbox", "user_001", "--read", str(item.id)))
    assert (await stack.tidings.inbox("user_001"))[0].read_at is not None
    unread = ok(await cli("inbox", "user_001", "--unread"))
    assert "(0 shown)" in unread and "Welcome" not in unread

    one_line_error(await cli("inbox", "user_001", "--read", "999999"), "not found")
    one_line_error(await cli("inbox", "ghost"), "user 'ghost' not found")


async def test_inbox_read_all(cli: Cli, stack: Stack) -> None:
    await _send_welcome(cli)
    await _send_welcome(cli)

    out = ok(await cli("inbox", "user_001", "--read-all"))

    assert "2 item(s) marked read" in out
    assert await stack.tidings.inbox("user_001", unread_only=True) == []


async def test_stats_counts_per_channel(cli: Cli, stack: Stack) -> None:
    await _send_welcome(cli)
    expected = (await stack.tidings.stats()).channels

    out = ok(await cli("stats"))

    email = re.search(r"email\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\S+)", out)
    assert email, out
    assert [int(n) for n in email.groups()[:4]] == [
        expected[Channel.EMAIL].sent,
        expected[Channel.EMAIL].delivered,
        expected[Channel.EMAIL].failed,
        expected[Channel.EMAIL].suppressed,
    ]
    assert email.group(1) == "1" and email.group(5) == "100.0%"
    assert re.search(r"in_app\s*│\s*0\s*│\s*1\s*│", out)
    assert re.search(r"push\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*1\s*│\s*-", out)


async def test_mail_lists_and_shows_the_maildir(cli: Cli, stack: Stack) -> None:
    assert "0 messages" in ok(await cli("mail"))
    await _send_welcome(cli)
    [message] = stack.sink.messages

    listed = ok(await cli("mail"))
    assert message.id in listed and "Welcome to MyApp, John!" in listed
    assert "john.doe@example.com" in listed

    shown = ok(await cli("mail", "show", message.id))
    assert "Hi John, welcome to MyApp! We're excited to have you on board." in shown
    assert re.search(r"html part\s+yes", shown)

    one_line_error(await cli("mail", "show", "0000000000000-deadbeef"), "not found")
    one_line_error(await cli("mail", "show", "../../etc/passwd"), "not a sink message id")


async def test_demo_replays_the_prototype(cli: Cli) -> None:
    out = ok(await cli("demo", "--timeout", "60"))

    statuses = out.split("Notification statuses")[1].split("Service statistics")[0]
    rows = [line for line in statuses.splitlines() if "│" in line]
    sms = [r for r in rows if re.search(r"│ sms\s", r)]
    # The order confirmation (user_002 accepts SMS) and the security alert (critical: forced
    # onto SMS although user_001 turned it off) both plan SMS. This stack's worker has no Twilio
    # credentials (only `tidings dev` fills in its emulators: test_devstack sees these sent).
    assert len(sms) == 2
    assert all("suppressed" in r and "no sms provider is configured" in r for r in sms)
    emails = [r for r in rows if re.search(r"│ email\s", r)]
    assert len(emails) == 5 and all("sent" in r for r in emails)
    for label in ("welcome", "order confirmation", "security alert", "bulk welcome"):
        assert re.search(rf"{label} to user_00\d: http://ui\.example/.*notification%2F", out)
    assert "Service statistics" in out and "inbox of user_001" in out
    assert "Welcome to MyApp, Valued Customer!" in out


async def test_inbox_states_filters_and_pages(cli: Cli, stack: Stack) -> None:
    await _send_welcome(cli)
    await _send_welcome(cli)
    newer, older = await stack.tidings.inbox("user_001")

    first = ok(await cli("inbox", "user_001", "--limit", "1"))
    assert "(1 shown)" in first and "unread 2, unseen 2" in first and "onboarding" in first
    cursor = re.search(r"--cursor (\S+)", first)
    assert cursor is not None
    second = ok(await cli("inbox", "user_001", "--limit", "1", "--cursor", cursor.group(1)))
    assert str(older.id) in second and "--cursor" not in second

    out = ok(await cli("inbox-mark", "user_001", "archived", str(older.id)))
    assert "1 item(s) marked archived; unread 1, unseen 1" in out
    assert "(1 shown)" in ok(await cli("inbox", "user_001"))
    assert "archived" in ok(await cli("inbox", "user_001", "--archived"))
    assert "(2 shown)" in ok(await cli("inbox", "user_001", "--all"))
    assert "unread 0, unseen 0" in ok(await cli("inbox-mark", "user_001", "read"))
    assert (await stack.tidings.inbox_counts("user_001")).unread == 0
    assert "(0 shown)" in ok(await cli("inbox", "user_001", "--category", "security"))

    one_line_error(await cli("inbox", "user_001", "--cursor", "nope"), "cursor")
    one_line_error(await cli("inbox-mark", "user_001", "read", "999999"), "not found")
    assert newer.id != older.id


async def test_inbox_token_prints_the_page_url(cli: Cli, stack: Stack) -> None:
    out = ok(await cli("inbox-token", "user_001", "--minutes", "5"))
    token, url = out.split()[:2]
    assert stack.tidings.inbox_grant(token) is not None
    assert "/inbox?user=user_001&token=" in url
    one_line_error(await cli("inbox-token", "ghost"), "user 'ghost' not found")
