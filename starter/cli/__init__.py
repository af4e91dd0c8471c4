"""The `tidings` command (console script `tidings = "starter.cli:app"`).

Every command reads `Settings()` (TIDINGS_* variables) once and talks to the stack through
`starter.client.Tidings`; failures it expects end with one line on stderr and exit code 1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer

from starter.cli import (
    analytics,
    broadcasts,
    dev,
    digests,
    directory,
    emulator,
    experiments,
    inbox,
    keys,
    notifications,
    reading,
    schedules,
)
from starter.cli._prose import as_prose


class _Tidings(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The console script's entry. It leaves with os._exit once the command is done: the
        Temporal client's Rust threads can abort interpreter shutdown ("Fatal Python error:
        PyGILState_Release", exit 134; temporalio/sdk-python#300), which would turn a clean
        exit code into a crash. Tests call the click command and never come through here."""
        try:
            super().__call__(*args, **kwargs)
            code: object = 0
        except SystemExit as e:
            code = e.code
        if code is not None and not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code or 0)


app = _Tidings(
    name="tidings",
    help="Durable multi-channel notifications on Temporal. Start the local stack with"
    " `tidings dev` (or `make run`), then try `tidings demo`.",
    no_args_is_help=True,
    add_completion=False,
    # Settings carry secrets: a crash report must not print local variables.
    pretty_exceptions_show_locals=False,
)

app.command("dev")(dev.dev)
app.command("demo")(dev.demo)
app.add_typer(directory.user_app, name="user")
app.add_typer(directory.device_app, name="device")
app.add_typer(directory.prefs_app, name="prefs")
app.add_typer(directory.template_app, name="template")
app.command("send")(notifications.send)
app.command("send-bulk")(notifications.send_bulk)
app.command("bulk-status")(notifications.bulk_status)
app.command("status")(notifications.status)
app.command("cancel")(notifications.cancel)
app.command("reschedule")(notifications.reschedule)
app.command("engage")(notifications.engage)
app.command("event")(notifications.event)
app.command("inbox")(inbox.inbox)
app.command("inbox-mark")(inbox.inbox_mark)
app.command("inbox-token")(inbox.inbox_token)
app.command("stats")(reading.stats)
app.add_typer(reading.mail_app, name="mail")
app.add_typer(emulator.emulator_app, name="emulator")
app.add_typer(experiments.experiment_app, name="experiment")
app.add_typer(keys.api_key_app, name="api-key")
app.add_typer(analytics.analytics_app, name="analytics")
app.add_typer(analytics.segment_app, name="segment")
app.add_typer(broadcasts.broadcast_app, name="broadcast")
app.add_typer(digests.digest_app, name="digest")
app.add_typer(schedules.schedule_app, name="schedule")
as_prose(app)

__all__ = ["app"]
