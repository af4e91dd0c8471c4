"""`tidings emulator faults|reset`: drive the provider emulators that `tidings dev` runs, through
their control endpoints on `dev_fcm_port`..`dev_slack_port` (see starter/dev/emulators/base.py)."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from starter.cli._runtime import out, run
from starter.dev import emulator_control as emulators
from tidings.settings import Settings

emulator_app = typer.Typer(
    help="Inject faults into the provider emulators of `tidings dev` (FCM, APNs, Twilio, Slack).",
    no_args_is_help=True,
)


class ProviderName(StrEnum):
    FCM = "fcm"
    APNS = "apns"
    TWILIO = "twilio"
    SLACK = "slack"


@emulator_app.command("faults")
def faults(
    provider: Annotated[ProviderName, typer.Argument(help="Which emulator.", case_sensitive=False)],
    mode: Annotated[
        str,
        typer.Argument(
            help="5xx, 429, slow, malformed, invalid_token, down_for (Slack also: error)."
        ),
    ],
    count: Annotated[
        int, typer.Option(min=1, help="How many of the next send requests it applies to.")
    ] = 1,
    status: Annotated[
        int | None, typer.Option(min=500, max=599, help="The 5xx status (default 500).")
    ] = None,
    retry_after: Annotated[
        float | None, typer.Option(min=0, help="Retry-After seconds of a 429.")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option(min=0, help="Delay of `slow`, duration of `down_for`.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="For invalid_token: the device token, phone number or Slack channel."),
    ] = None,
    error: Annotated[
        str | None,
        typer.Option(help="Provider error string (Slack `error`, FCM INVALID_ARGUMENT)."),
    ] = None,
    code: Annotated[int | None, typer.Option(help="Twilio error code for invalid_token.")] = None,
) -> None:
    """Make the next send requests to a running emulator fail: e.g. `tidings emulator faults
    twilio 5xx --count 3`, `... fcm 429 --retry-after 2`, `... apns down_for --seconds 30`."""
    fault: dict[str, Any] = {"mode": mode, "count": count}
    options = {"status": status, "retry_after": retry_after, "seconds": seconds, "token": token,
               "error": error, "code": code}  # fmt: skip
    fault.update({k: v for k, v in options.items() if v is not None})

    async def main(settings: Settings) -> None:
        await emulators.inject_fault(settings, provider.value, fault)
        p = emulators.PROVIDERS[provider.value]
        out().print(
            f"{p.name} emulator at {p.url(settings)}: injected {json.dumps(fault)}",
            markup=False,
            soft_wrap=True,
        )

    run(main)


@emulator_app.command("reset")
def reset(
    provider: Annotated[
        ProviderName | None,
        typer.Argument(help="Which emulator; all four when left out.", case_sensitive=False),
    ] = None,
) -> None:
    """Clear an emulator's faults (dead tokens included) and the requests it recorded."""

    async def main(settings: Settings) -> None:
        keys = [provider.value] if provider else list(emulators.PROVIDERS)
        await asyncio.gather(*(emulators.control(settings, k, "POST", "reset") for k in keys))
        names = ", ".join(emulators.PROVIDERS[k].name for k in keys)
        out().print(f"reset: {names}", markup=False)

    run(main)
