"""`tidings dev` / run_dev: the embedded stack starts, delivers, refuses a second copy, keeps its
history across a restart (the SQLite file), and leaves no process behind when it stops; its
worker sends push, SMS and Slack to the emulators it runs, faults injected from the CLI included."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from starter.client import Tidings
from starter.dev import devserver
from starter.dev.smtp_sink import list_mail
from starter.dev.stack import AlreadyRunning, DevStackError, run_dev
from tests.cli.devstack_support import (
    dev_env_vars,
    dev_stack,
    processes_mentioning,
    running_env,
    settings_from,
    start_dev_process,
)
from tests.cli.helpers import Cli, ok, one_line_error
from tests.ports import busy_port
from tidings.models import Channel, DeliveryStatus, NotificationStatus
from workflows.queues import workflow_id

pytestmark = pytest.mark.integration

WELCOME = {"app_name": "MyApp", "user_name": "John"}
ORDER = {"order_id": "7", "amount": "5.00", "delivery_date": "tomorrow"}


async def wait_for_mail(maildir: Path, subject: str) -> None:
    async with asyncio.timeout(60):
        while not any(m.subject == subject for m in list_mail(maildir)):
            await asyncio.sleep(0.1)


async def test_dev_stack_delivers_refuses_a_twin_and_survives_a_restart(tmp_path: Path) -> None:
    env = dev_env_vars(tmp_path / "data")
    settings = settings_from(env)
    data_dir = settings.data_dir.resolve()
    temporal_db = data_dir / "temporal.db"

    async with dev_stack(settings) as running:
        async with await Tidings.connect(running) as tidings:
            ref = await tidings.notify(user_id="user_001", template_id="welcome", data=WELCOME)
        await wait_for_mail(data_dir / "mail", "Welcome to MyApp, John!")
        assert processes_mentioning(temporal_db)

        with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)"):
            await run_dev(settings, banner=False)
        one_line_error(await Cli(env)("dev"), "tidings dev is already running")

    assert processes_mentioning(temporal_db) == []

    async with dev_stack(settings) as running:  # other ports this time, the same history
        async with await Tidings.connect(running) as tidings:
            handle = tidings.temporal.get_workflow_handle(workflow_id(ref.notification_id))
            description = await handle.describe()
            result = await tidings.status(ref.notification_id)
        assert processes_mentioning(temporal_db)
    # Still in its engagement window: the run itself came back from the SQLite file.
    assert description.status is WorkflowExecutionStatus.RUNNING
    assert result.status is NotificationStatus.SENT
    assert processes_mentioning(temporal_db) == []


async def test_a_port_in_use_is_named_and_nothing_is_started(tmp_path: Path) -> None:
    with busy_port() as port:
        env = {**dev_env_vars(tmp_path / "data"), "TIDINGS_DEV_UI_PORT": str(port)}
        settings = settings_from(env)
        with pytest.raises(DevStackError, match=f"port {port} .*TIDINGS_DEV_UI_PORT"):
            await run_dev(settings, banner=False)

    assert processes_mentioning(settings.data_dir.resolve() / "temporal.db") == []


async def test_tidings_dev_process_stops_everything_on_sigterm(tmp_path: Path) -> None:
    env = dev_env_vars(tmp_path / "data")
    temporal_db = (tmp_path / "data" / "temporal.db").resolve()
    proc, banner = await start_dev_process(env)
    try:
        assert re.search(r"Temporal\s+127\.0\.0\.1:[1-9]\d*\s", banner), banner
        assert processes_mentioning(temporal_db)
        # The development key is printed with the addresses and kept, readable by its owner only.
        key_file = tmp_path / "data" / "dev-api-key"
        key = key_file.read_text().strip()
        assert re.fullmatch(r"tid_[0-9a-f]{16}_\S+", key) and key in banner.replace("\n", "")
        assert key_file.stat().st_mode & 0o777 == 0o600

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0
    assert processes_mentioning(temporal_db) == []


async def received(http: httpx.AsyncClient, env: dict[str, str], provider: str) -> list[Any]:
    """What a running emulator recorded, through its control endpoint."""
    port = env[f"TIDINGS_DEV_{provider.upper()}_PORT"]
    answer = await http.get(f"http://127.0.0.1:{port}/_emulator/received")
    assert answer.status_code == 200
    return list(answer.json())


async def test_dev_stack_sends_push_sms_and_slack_to_its_emulators(tmp_path: Path) -> None:
    base = {**dev_env_vars(tmp_path / "data"), "COLUMNS": "250"}
    settings = settings_from(base)

    async with dev_stack(settings) as running, httpx.AsyncClient(timeout=10) as http:
        env = running_env(base, running)
        cli = Cli(env)
        out = ok(await cli("demo", "--timeout", "60"))

        statuses = out.split("Notification statuses")[1].split("Service statistics")[0]
        rows = [line for line in statuses.splitlines() if "│" in line]
        pushes = [r for r in rows if re.search(r"│ push\s", r)]
        sms = [r for r in rows if re.search(r"│ sms\s", r)]
        # welcome and both bulk welcomes; the order confirmation to user_002, and the critical
        # security alert, which reaches user_001 although user_001 switched SMS off.
        assert len(pushes) == 3 and all("│ sent" in r for r in pushes), statuses
        assert len(sms) == 2 and all("│ sent" in r for r in sms), statuses
        assert "provider is configured" not in out
        fcm = [r for r in await received(http, env, "fcm") if r["path"].endswith(":send")]
        apns = await received(http, env, "apns")
        twilio = await received(http, env, "twilio")
        assert (
            f"Provider emulators received, during this demo: FCM {len(fcm)} send requests,"
            f" APNs {len(apns)}, Twilio {len(twilio)}, Slack 0"
        ) in out

        messages = [(r["json"]["message"]["token"], r["json"]["message"]["notification"]["title"])
                    for r in fcm]  # fmt: skip
        assert sorted(messages) == [
            ("fcm_token_123", "Welcome to MyApp, John!"),
            ("fcm_token_123", "Welcome to MyApp, Valued Customer!"),
            ("fcm_token_456", "Welcome to MyApp, John!"),
            ("fcm_token_456", "Welcome to MyApp, Valued Customer!"),
            ("fcm_token_789", "Welcome to MyApp, Valued Customer!"),
        ]
        [iphone] = apns
        assert (
            iphone["http_version"] == "2"
            and iphone["path"] == f"/3/device/{'a0b1c2d3e4f5' * 5}a0b1"
        )
        texts = sorted((r["form"]["To"], r["form"]["Body"]) for r in twilio)
        assert texts == [
            ("+12025550123", "We detected suspicious login attempt on your account at 2024-01-10"
             " 14:30:00 UTC. If this wasn't you, please secure your account immediately."),
            ("+14155550132", "Order #ORD-12345 confirmed: $99.99, arriving 2024-01-15."),
        ]  # fmt: skip

        async with await Tidings.connect(running) as tidings:
            # A failing Twilio: the first attempt gets a 500, the activity's retry gets through.
            ok(await cli("emulator", "faults", "twilio", "5xx", "--count", "1"))
            ref = await tidings.notify(user_id="user_002", template_id="order_confirmation",
                                       data=ORDER, channels=[Channel.SMS])  # fmt: skip
            result = await tidings.wait_sent(ref.notification_id, within=60)
            assert [(c.channel, c.status) for c in result.channels] == [
                (Channel.SMS, DeliveryStatus.SENT)
            ]
            first, second = (await received(http, env, "twilio"))[len(twilio) :]
            assert first["form"] == second["form"] and first["form"]["Body"].startswith("Order #7")
            key = "i-twilio-idempotency-token"
            assert first["headers"][key] == second["headers"][key]  # the same send, retried

            one_line_error(
                await cli("emulator", "faults", "twilio", "flood"), "unknown fault mode 'flood'"
            )

            # Slack through the bot token the stack filled in, to user_002's Slack member id.
            await tidings.register_template(
                {"id": "deploy", "channels": ["slack"], "content": {"subject": "Deployed",
                 "text": "{{ app }} is live"}, "sample_data": {"app": "x"}}
            )  # fmt: skip
            ref = await tidings.notify(
                user_id="user_002", template_id="deploy", data={"app": "api"}
            )
            result = await tidings.wait_sent(ref.notification_id, within=60)
            assert [c.status for c in result.channels] == [DeliveryStatus.SENT]
            [post] = await received(http, env, "slack")
            assert post["path"] == "/api/chat.postMessage"
            assert post["headers"]["authorization"].startswith("Bearer xoxb-")
            assert post["json"]["channel"] == "U0DEMO0002" and "api is live" in post["json"]["text"]


async def test_a_dev_server_port_taken_before_its_bind_is_retried_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Temporal CLI cannot report a port it chose, so the stack picks one; when another
    process takes it before the CLI binds it (the CI flake of issue 7), the stack starts the
    server again on new ports instead of failing."""
    real_pick = devserver.pick_port
    with busy_port() as taken:
        picks = iter([taken])
        monkeypatch.setattr(
            devserver, "pick_port", lambda host: next(picks, None) or real_pick(host)
        )
        settings = settings_from(dev_env_vars(tmp_path / "data"))
        async with dev_stack(settings) as running:
            assert running.dev_temporal_port not in (0, taken)
            async with await Tidings.connect(running) as tidings:
                await tidings.get_user("user_001")
    log = (tmp_path / "data" / "temporal.log").read_text()
    assert f"--port {taken} " in log  # the first attempt was on the taken port
