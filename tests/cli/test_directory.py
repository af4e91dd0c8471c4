"""`tidings user|device|prefs|template`: what they store, and how they refuse bad input."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack
from tidings.errors import NotFound
from tidings.models import Channel, Platform

PROMO_YAML = """\
id: promo
name: Spring promo
category: marketing
channels: [email, in_app]
content:
  subject: "{{ percent }}% off, {{ name }}!"
  text: "Hi {{ name }}, take {{ percent }}% off until {{ until }}."
sample_data: {name: Ada, percent: 20, until: Friday}
"""

RECEIPT_TOML = """\
id = "receipt"
name = "Receipt"
channels = ["email"]
default_priority = "high"

[content]
subject = "Receipt {{ number }}"
text = "You paid {{ amount }}."

[sample_data]
number = "R-1"
amount = "9.99"
"""

ESCAPE_TOML = """\
id = "evil"
channels = ["email"]

[content]
subject = "hello"
text = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
"""


async def test_user_add_then_show(cli: Cli, stack: Stack) -> None:
    added = ok(
        await cli(
            "user", "add", "ann", "--email", "ann@example.com", "--phone", "+14155550111",
            "--timezone", "Europe/Paris", "--attr", "plan=pro",
        )
    )  # fmt: skip
    assert "user ann saved" in added

    stored = await stack.tidings.get_user("ann")
    assert (stored.email, stored.timezone, stored.attributes) == (
        "ann@example.com",
        "Europe/Paris",
        {"plan": "pro"},
    )
    shown = ok(await cli("user", "show", "ann"))
    assert "ann@example.com" in shown and "Europe/Paris" in shown and "plan=pro" in shown
    listed = ok(await cli("user", "list"))
    assert "ann" in listed and "user_001" in listed


async def test_user_add_refuses_a_bad_email_in_one_line(cli: Cli, stack: Stack) -> None:
    result = await cli("user", "add", "bob", "--email", "not-an-email")

    one_line_error(result, "email:", "not a valid email address")
    with pytest.raises(NotFound):
        await stack.tidings.get_user("bob")


async def test_user_add_refuses_a_bad_timezone_in_one_line(cli: Cli, stack: Stack) -> None:
    result = await cli(
        "user", "add", "bob", "--email", "bob@example.com", "--timezone", "Mars/Base"
    )

    one_line_error(result, "timezone:", "unknown IANA timezone 'Mars/Base'")
    with pytest.raises(NotFound):
        await stack.tidings.get_user("bob")


async def test_user_show_unknown_user(cli: Cli) -> None:
    one_line_error(await cli("user", "show", "ghost"), "user 'ghost' not found")


async def test_device_add(cli: Cli, stack: Stack) -> None:
    out = ok(await cli("device", "add", "user_001", "fcm", "token-abcdefgh", "--label", "pixel"))

    assert "fcm device added for user_001" in out
    devices = await stack.tidings.list_devices("user_001")
    assert [(d.platform, d.label) for d in devices] == [(Platform.FCM, "pixel")]
    one_line_error(await cli("device", "add", "user_001", "fcm", "short"), "token")


async def test_prefs_set_merges_and_show_reads_back(cli: Cli, stack: Stack) -> None:
    ok(await cli("prefs", "set", "user_002", "--disable", "sms", "--quiet-hours", "22:00-07:00"))
    ok(await cli("prefs", "set", "user_002", "--category", "marketing", "--disable", "email"))

    prefs = await stack.tidings.get_preferences("user_002")
    assert prefs.channels[Channel.SMS] is False
    assert prefs.channels[Channel.EMAIL] is True  # from the seed, untouched
    assert prefs.categories == {"marketing": {Channel.EMAIL: False}}
    assert prefs.quiet_hours is not None
    assert (prefs.quiet_hours.start, prefs.quiet_hours.end) == (time(22), time(7))
    shown = ok(await cli("prefs", "show", "user_002"))
    assert "sms off" in shown and "category marketing" in shown and "22:00-07:00" in shown

    one_line_error(await cli("prefs", "set", "user_002", "--quiet-hours", "late"), "--quiet-hours")
    one_line_error(
        await cli("prefs", "set", "user_002", "--enable", "sms", "--disable", "sms"), "sms"
    )


async def test_template_add_from_yaml_keeps_the_version_when_unchanged(
    cli: Cli, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "promo.yaml"
    path.write_text(PROMO_YAML)

    assert "template promo v1 registered" in ok(await cli("template", "add", str(path)))
    assert "template promo v1 unchanged" in ok(await cli("template", "add", str(path)))
    path.write_text(PROMO_YAML.replace("% off", "% discount"))
    assert "template promo v2 registered" in ok(await cli("template", "add", str(path)))

    template = await stack.tidings.get_template("promo")
    assert template.version == 2
    assert template.content.subject == "{{ percent }}% discount, {{ name }}!"
    assert "Spring promo" in ok(await cli("template", "show", "promo", "--version", "1"))
    assert "promo" in ok(await cli("template", "list"))


async def test_template_add_from_toml(cli: Cli, stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "receipt.toml"
    path.write_text(RECEIPT_TOML)

    assert "template receipt v1 registered" in ok(await cli("template", "add", str(path)))

    template = await stack.tidings.get_template("receipt")
    assert template.channels == [Channel.EMAIL]
    assert template.default_priority.value == "high"


async def test_template_with_a_sandbox_escape_is_refused(
    cli: Cli, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "evil.toml"
    path.write_text(ESCAPE_TOML)

    one_line_error(await cli("template", "add", str(path)), "content.text", "sandbox")
    with pytest.raises(NotFound):
        await stack.tidings.get_template("evil")


async def test_template_files_that_do_not_parse(cli: Cli, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("id: [unclosed\nchannels: email\n")
    one_line_error(await cli("template", "add", str(bad_yaml)), "not valid YAML", "line")

    not_a_template = tmp_path / "list.yaml"
    not_a_template.write_text("- a\n- b\n")
    one_line_error(await cli("template", "add", str(not_a_template)), "mapping")

    missing_channels = tmp_path / "nochannels.toml"
    missing_channels.write_text('id = "x"\n[content]\ntext = "hi"\n')
    one_line_error(await cli("template", "add", str(missing_channels)), "channels")

    one_line_error(await cli("template", "add", str(tmp_path / "nope.yaml")), "cannot read it")
