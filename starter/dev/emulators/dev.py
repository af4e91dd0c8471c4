"""All four provider emulators on their default ports, with dev credentials, for the dev stack.

`python -m starter.dev.emulators [DATA_DIR]` runs them until interrupted and logs the TIDINGS_*
settings that point a worker at them; `DevEmulators` does the same inside another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from starter.dev.emulators.apns import ApnsEmulator, dev_apns_key
from starter.dev.emulators.base import Emulator
from starter.dev.emulators.fcm import DEV_PROJECT, FcmEmulator, dev_service_account
from starter.dev.emulators.slack import DEV_BOT_TOKEN, SlackEmulator
from starter.dev.emulators.twilio import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, TwilioEmulator

logger = logging.getLogger(__name__)

DEV_APNS_KEY_ID = "DEVKEY0001"
DEV_APNS_TEAM_ID = "DEVTEAM001"
DEV_APNS_TOPIC = "dev.tidings.app"
DEV_FROM_NUMBER = "+15005550006"


@dataclass
class DevEmulators:
    data_dir: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # name -> port; default ports otherwise
    fcm: FcmEmulator = field(init=False)
    apns: ApnsEmulator = field(init=False)
    twilio: TwilioEmulator = field(init=False)
    slack: SlackEmulator = field(init=False)
    fcm_key: Path | None = field(init=False, default=None)  # written by start()
    apns_key: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.fcm = FcmEmulator(self.host, self.ports.get("fcm"))
        self.apns = ApnsEmulator(self.host, self.ports.get("apns"))
        self.twilio = TwilioEmulator(self.host, self.ports.get("twilio"))
        self.slack = SlackEmulator(self.host, self.ports.get("slack"))

    @property
    def all(self) -> list[Emulator]:
        return [self.fcm, self.apns, self.twilio, self.slack]

    async def start(self) -> None:
        """Start all four and trust the dev keys under `<data_dir>/emulators`, written on the
        first start and kept afterwards, so a worker configured from them keeps working."""
        try:
            for emulator in self.all:
                await emulator.start()
            keys = self.data_dir / "emulators"
            self.fcm_key = keys / "fcm-service-account.json"
            token_uri = f"{self.fcm.url}/token"
            try:
                _follow_token_uri(self.fcm_key, token_uri)
                self.fcm.trust_service_account(self.fcm_key)
            except (OSError, ValueError, KeyError, TypeError):
                # Missing, or not a usable key: a fresh one.
                dev_service_account(self.fcm_key, token_uri=token_uri)
                self.fcm.trust_service_account(self.fcm_key)
            self.apns_key = keys / "apns-dev.p8"
            try:
                self.apns.trust_key(DEV_APNS_KEY_ID, DEV_APNS_TEAM_ID, self.apns_key)
            except (OSError, ValueError, TypeError):
                dev_apns_key(self.apns_key)
                self.apns.trust_key(DEV_APNS_KEY_ID, DEV_APNS_TEAM_ID, self.apns_key)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for emulator in self.all:
            await emulator.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def settings(self) -> dict[str, str]:
        """TIDINGS_* settings (without the prefix, lower-case) that point at these emulators."""
        if self.fcm_key is None or self.apns_key is None:
            raise RuntimeError("start the emulators first: their dev keys are written on start")
        return {
            "fcm_base_url": self.fcm.url,
            "fcm_service_account_file": str(self.fcm_key),
            "fcm_project_id": DEV_PROJECT,
            "apns_base_url": self.apns.url,
            "apns_key_file": str(self.apns_key),
            "apns_key_id": DEV_APNS_KEY_ID,
            "apns_team_id": DEV_APNS_TEAM_ID,
            "apns_topic": DEV_APNS_TOPIC,
            "twilio_base_url": self.twilio.url,
            "twilio_account_sid": DEV_ACCOUNT_SID,
            "twilio_auth_token": DEV_AUTH_TOKEN,
            "twilio_from_number": DEV_FROM_NUMBER,
            "slack_base_url": self.slack.url,
            "slack_bot_token": DEV_BOT_TOKEN,
        }


def _follow_token_uri(path: Path, token_uri: str) -> None:
    """A kept service-account key names the token endpoint of the port it was written for."""
    document = json.loads(path.read_text())
    if document["token_uri"] != token_uri:
        document["token_uri"] = token_uri
        path.write_text(json.dumps(document, indent=2))


async def _serve(data_dir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with DevEmulators(data_dir) as emulators:
        env = " ".join(f"TIDINGS_{k.upper()}={v}" for k, v in emulators.settings().items())
        logger.info("emulators running; point a worker at them with:\n%s", env)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(Path(args[0] if args else ".tidings")))
