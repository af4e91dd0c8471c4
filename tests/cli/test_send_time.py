"""`tidings send --send-at optimal [--optimal-within 12h]` against the real stack."""

from __future__ import annotations

import pytest

from tests.cli.helpers import Cli, ok, one_line_error
from tests.cli.test_notifications import WELCOME, notification_id
from tests.support import Stack, assert_sent_in_the_first_hour


async def test_send_at_optimal_records_the_choice(cli: Cli, stack: Stack) -> None:
    args = ("--send-at", "optimal", "--optimal-within", "12h", "-c", "email", "--wait")
    now = await stack.tidings.now()
    shown = ok(await cli("send", "user_001", "welcome", *WELCOME, *args))
    nid = notification_id(shown)
    result = await stack.tidings.wait_sent(nid)
    assert_sent_in_the_first_hour(result, now)
    assert result.send_time_reason is not None
    assert "send time" in shown and "optimal send time" in shown.replace("\n", " ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--send-at", "soon"), "send_at: Input should be 'optimal'"),
        (("--send-at", "optimal", "--optimal-within", "8d"), "optimal_within: must be more"),
        (("--send-at", "optimal", "--optimal-within", "0h"), "optimal_within: must be more"),
        (("--send-at", "optimal", "--optimal-within", "soon"), "--optimal-within: 'soon' is not"),
    ],
)
async def test_bad_optimal_options(cli: Cli, args: tuple[str, ...], expected: str) -> None:
    one_line_error(await cli("send", "user_001", "welcome", *WELCOME, *args), expected)
