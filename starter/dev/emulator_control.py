"""The provider emulators as `tidings dev` runs them: the port each listens on, the settings that
point the stack's worker at them, and a client for their control endpoints (`/_emulator/...`),
used by `tidings emulator` and `tidings demo`.

Only the dev stack fills the emulators in: `Settings()` itself keeps no provider credentials, so
a production worker builds no sender it was not given. A provider configured explicitly (say
TIDINGS_TWILIO_ACCOUNT_SID set to a real account) keeps its own settings in the dev stack too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import TypeAdapter

from starter.dev.emulators.dev import DevEmulators
from tidings.channels.providers import apns_configured, fcm_configured, twilio_configured
from tidings.errors import TidingsError
from tidings.settings import Settings

HOST = "127.0.0.1"
CONTROL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Provider:
    key: str  # as DevEmulators' ports and the CLI name it
    name: str
    port_setting: str
    configured: Callable[[Settings], bool]
    sends: Callable[[str], bool]  # whether a request path is a send (not a token or control call)

    def port(self, settings: Settings) -> int:
        return int(getattr(settings, self.port_setting))

    def url(self, settings: Settings) -> str:
        return f"http://{HOST}:{self.port(settings)}"


PROVIDERS = {
    p.key: p
    for p in (
        Provider("fcm", "FCM", "dev_fcm_port", fcm_configured,
                 lambda path: path.endswith("/messages:send")),
        Provider("apns", "APNs", "dev_apns_port", apns_configured,
                 lambda path: path.startswith("/3/device/")),
        Provider("twilio", "Twilio", "dev_twilio_port", twilio_configured,
                 lambda path: path.endswith("/Messages.json")),
        Provider("slack", "Slack", "dev_slack_port", lambda s: s.slack_bot_token is not None,
                 lambda path: path == "/api/chat.postMessage" or path.startswith("/services/")),
    )
}  # fmt: skip


class EmulatorError(TidingsError):
    """An emulator did not answer, or refused a control request."""


def port_settings(settings: Settings) -> dict[str, int]:
    """{"dev_fcm_port": 8031, ...}: what `check_ports_free` names when a port is taken."""
    return {p.port_setting: p.port(settings) for p in PROVIDERS.values()}


def dev_emulators(settings: Settings) -> DevEmulators:
    return DevEmulators(
        settings.data_dir.resolve(),
        host=HOST,
        ports={p.key: p.port(settings) for p in PROVIDERS.values()},
    )


def with_emulators(settings: Settings, emulators: DevEmulators) -> tuple[Settings, list[str]]:
    """`settings` with every provider it leaves unconfigured pointed at its running emulator
    (base URL and dev credentials); also the keys of the providers that now use an emulator."""
    filled = emulators.settings()
    update: dict[str, Any] = {}
    used = []
    for provider in PROVIDERS.values():
        if provider.configured(settings):
            continue
        used.append(provider.key)
        for name, value in filled.items():
            if name.startswith(f"{provider.key}_"):
                update[name] = _typed(name, value)
    return settings.model_copy(update=update), used


def _typed(name: str, value: str) -> Any:
    # model_copy does not validate: paths and secrets must arrive as the field's own type.
    annotation = Settings.model_fields[name].annotation
    assert annotation is not None
    return TypeAdapter(annotation).validate_python(value)


async def control(
    settings: Settings,
    provider: str,
    method: str,
    endpoint: str,
    body: Mapping[str, Any] | None = None,
) -> Any:
    """One request to an emulator's control endpoint; its JSON answer, or EmulatorError."""
    p = PROVIDERS[provider]
    url = f"{p.url(settings)}/_emulator/{endpoint}"
    try:
        async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT_SECONDS) as http:
            response = await http.request(method, url, json=body)
    except httpx.HTTPError as e:
        raise EmulatorError(
            f"no {p.name} emulator answers at {p.url(settings)} ({type(e).__name__}); start the"
            f" stack with `make run` (or `tidings dev`), or set TIDINGS_{p.port_setting.upper()}"
        ) from e
    try:
        answer = response.json()
    except json.JSONDecodeError:
        answer = None
    if response.status_code != 200 or answer is None:
        reason = answer.get("error") if isinstance(answer, dict) else response.text[:200]
        raise EmulatorError(
            f"the {p.name} emulator at {p.url(settings)} refused {method} /_emulator/{endpoint}"
            f" (HTTP {response.status_code}): {reason}"
        )
    return answer


async def inject_fault(settings: Settings, provider: str, fault: Mapping[str, Any]) -> Any:
    """The fault as the emulator accepted it (its `fault` field)."""
    return (await control(settings, provider, "POST", "faults", fault))["fault"]


async def send_counts(settings: Settings) -> dict[str, int]:
    """How many send requests each answering emulator has recorded (faulted ones included);
    emulators that do not answer are left out."""
    counts = {}
    for key, provider in PROVIDERS.items():
        try:
            received = await control(settings, key, "GET", "received")
        except EmulatorError:
            continue
        counts[key] = sum(1 for r in received if provider.sends(str(r.get("path", ""))))
    return counts
