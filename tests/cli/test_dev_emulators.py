"""The provider emulators as the dev stack runs them, without a stack: the settings it fills in
for the worker, the dev keys it keeps, and `tidings emulator` when nothing answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from starter.dev.emulator_control import PROVIDERS, dev_emulators, with_emulators
from starter.dev.emulators.twilio import DEV_ACCOUNT_SID
from starter.dev.stack import DevStackError, run_dev
from tests.cli.devstack_support import dev_env_vars, processes_mentioning, settings_from
from tests.cli.helpers import Cli, one_line_error
from tests.ports import busy_port, refused_port
from tidings.channels.providers import build_provider_senders
from tidings.models import Channel
from tidings.settings import Settings
from tidings.store import Store


def free_ports(settings: Settings, data_dir: Path) -> Settings:
    # Port 0: each emulator binds a free port (model_copy does not validate the range).
    ports = {p.port_setting: 0 for p in PROVIDERS.values()}
    return settings.model_copy(update={"data_dir": data_dir, **ports})


async def test_unconfigured_providers_point_at_the_emulators(tmp_path: Path) -> None:
    base = Settings(_env_file=None, environment="test")
    assert base.fcm_service_account_file is None and base.twilio_account_sid is None
    settings = free_ports(base, tmp_path)

    async with dev_emulators(settings) as emulators:
        filled, used = with_emulators(settings, emulators)
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}")
        try:
            async with httpx.AsyncClient() as http:
                senders = build_provider_senders(filled, store, http)
        finally:
            await store.close()

    assert used == ["fcm", "apns", "twilio", "slack"]
    assert set(senders) == {Channel.PUSH, Channel.SMS, Channel.SLACK}
    assert (
        filled.fcm_base_url == emulators.fcm.url and filled.twilio_base_url == emulators.twilio.url
    )
    assert (
        filled.fcm_service_account_file == tmp_path.resolve() / "emulators/fcm-service-account.json"
    )
    assert filled.twilio_auth_token is not None and filled.twilio_account_sid == DEV_ACCOUNT_SID
    assert base.twilio_base_url == "http://127.0.0.1:8033"  # the original is left alone


async def test_an_explicitly_configured_provider_keeps_its_settings(tmp_path: Path) -> None:
    real = {"twilio_account_sid": "AC" + "f" * 32, "twilio_base_url": "https://api.twilio.com"}
    configured = Settings.model_validate({"environment": "test", "_env_file": None, **real})
    settings = free_ports(configured, tmp_path)

    async with dev_emulators(settings) as emulators:
        filled, used = with_emulators(settings, emulators)

    assert used == ["fcm", "apns", "slack"]
    assert (filled.twilio_account_sid, filled.twilio_base_url) == (
        real["twilio_account_sid"],
        real["twilio_base_url"],
    )
    assert filled.twilio_auth_token is None


async def test_dev_keys_are_kept_across_restarts(tmp_path: Path) -> None:
    settings = free_ports(Settings(_env_file=None, environment="test"), tmp_path)
    async with dev_emulators(settings) as first:
        assert first.fcm_key is not None and first.apns_key is not None
        key_file, p8 = first.fcm_key, first.apns_key
        written = json.loads(key_file.read_text())
        pem = p8.read_bytes()

    async with dev_emulators(settings) as second:
        kept = json.loads(key_file.read_text())
        # Same key, new port: the token endpoint follows the emulator.
        assert kept["private_key"] == written["private_key"]
        assert kept["token_uri"] == f"{second.fcm.url}/token"
        assert p8.read_bytes() == pem

    key_file.write_text("{not json")
    p8.write_text("not a key")
    async with dev_emulators(settings) as third:
        assert json.loads(key_file.read_text())["private_key"] != written["private_key"]
        assert p8.read_bytes() != pem
        assert third.fcm_key == key_file


async def test_a_busy_emulator_port_is_named_and_nothing_is_started(tmp_path: Path) -> None:
    with busy_port() as port:
        env = {**dev_env_vars(tmp_path / "data"), "TIDINGS_DEV_TWILIO_PORT": str(port)}
        settings = settings_from(env)
        with pytest.raises(DevStackError, match=f"port {port} .*TIDINGS_DEV_TWILIO_PORT"):
            await run_dev(settings, banner=False)

    assert processes_mentioning(settings.data_dir.resolve() / "temporal.db") == []


async def test_fault_command_without_an_emulator_is_one_line(tmp_path: Path) -> None:
    with refused_port() as twilio, refused_port() as fcm:
        env = {
            **dev_env_vars(tmp_path / "data"),
            "TIDINGS_DEV_TWILIO_PORT": str(twilio),
            "TIDINGS_DEV_FCM_PORT": str(fcm),
        }
        result = await Cli(env)("emulator", "faults", "twilio", "5xx", "--count", "3")

        one_line_error(
            result,
            f"no Twilio emulator answers at http://127.0.0.1:{twilio}",
            "TIDINGS_DEV_TWILIO_PORT",
        )
        one_line_error(await Cli(env)("emulator", "reset", "fcm"), "no FCM emulator answers")
