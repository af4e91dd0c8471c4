"""What every command shares: settings read once, a client, one-line errors, input parsing.

Expected failures (bad input, unknown ids, a refused state change, no Temporal to talk to) end
the command with one line on stderr and exit code 1; `typer.Exit` is how they leave.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError, RPCStatusCode

from starter.client import Tidings
from starter.webui import workflow_url
from tidings import eventloop
from tidings.errors import InvalidRequest, TidingsError
from tidings.models import NotificationResult
from tidings.settings import Settings
from workflows.connect import connect as connect_temporal
from workflows.queues import workflow_id

T = TypeVar("T")

RUN_HINT = "start the stack with `make run` (or `tidings dev`), or set TIDINGS_TEMPORAL_ADDRESS"


class TemporalUnreachable(TidingsError):
    pass


class StoreUnavailable(TidingsError):
    pass


def out() -> Console:
    # Built per call so that the width (COLUMNS) and the streams are those of this invocation.
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    one_line = re.sub(r"\s*\n\s*", " ", message).strip()
    err().print(f"error: {one_line}", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        problem = InvalidRequest.from_validation(e)
        where = "" if problem.field == e.title else f"TIDINGS_{problem.field.upper()}: "
        fail(f"settings: {where}{problem.reason}")
    except SettingsError as e:
        fail(f"settings: {e}")


def run(command: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Build the settings once and run `command(settings)`; expected errors become one line."""
    settings = load_settings()
    try:
        return eventloop.run(command(settings), use_uvloop=settings.uvloop)
    except TidingsError as e:
        fail(str(e))
    except ValidationError as e:
        fail(str(InvalidRequest.from_validation(e)))
    except RPCError as e:
        if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            where = settings.temporal_address
            fail(f"Temporal at {where} stopped answering ({e.message}); {RUN_HINT}")
        fail(f"Temporal refused the request: {e.status.name if e.status else 'error'}: {e.message}")


@asynccontextmanager
async def connect(settings: Settings, *, temporal_needed: bool = True) -> AsyncIterator[Tidings]:
    """A client; with `temporal_needed=False` (commands that only touch the database, such as
    API keys) Temporal is connected lazily, so those commands work while it is down."""
    try:
        temporal = await connect_temporal(settings, lazy=not temporal_needed)
    except RuntimeError as e:
        where = settings.temporal_address
        raise TemporalUnreachable(
            f"cannot reach Temporal at {where} ({_connect_reason(e)}); {RUN_HINT}"
        ) from e
    except OSError as e:  # the TLS client certificate or key files
        raise TemporalUnreachable(f"cannot read the Temporal TLS files: {e}") from e
    try:
        tidings = await Tidings.connect(settings, temporal=temporal)
    except (ValueError, OSError, SQLAlchemyError) as e:
        cause = getattr(e, "orig", None) or e
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise StoreUnavailable(f"cannot open the database: {reason}") from e
    try:
        yield tidings
    finally:
        await tidings.close()


def _connect_reason(error: RuntimeError) -> str:
    text = str(error)
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("dns error", "unknown host"),
        ("timed out", "timed out"),
    ):
        if marker.lower() in text.lower():
            return reason
    return text.removeprefix("Failed client connect: ")[:200]


# --- parsing -------------------------------------------------------------------------------------

_DELAY = re.compile(r"^\+\s*(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str, option: str) -> timedelta:
    """A length of time: `90m`, `12h`, `3d` (a leading + is allowed)."""
    match = _DELAY.match("+" + value.strip().removeprefix("+"))
    if not match:
        raise InvalidRequest(option, f"{value!r} is not a duration like 90m, 12h or 3d")
    amount, unit = float(match.group(1)), _UNITS[match.group(2)]
    try:
        return timedelta(**{unit: amount})
    except OverflowError:
        raise InvalidRequest(option, f"{value!r} is too long") from None


def parse_when(value: str, option: str) -> datetime:
    """ISO 8601 with an offset (`2026-12-01T09:00:00+01:00`, `...Z`) or a delay from now
    (`+30s`, `+10m`, `+2h`, `+3d`, `+1w`)."""
    text = value.strip()
    delay = _DELAY.match(text)
    if delay:
        amount, unit = float(delay.group(1)), _UNITS[delay.group(2)]
        try:
            return datetime.now(UTC) + timedelta(**{unit: amount})
        except OverflowError:  # +99999999d is past year 9999
            raise InvalidRequest(option, f"{value!r} is too far ahead") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            option,
            f"{value!r} is not a time; use ISO 8601 with an offset"
            " (2026-12-01T09:00:00+01:00) or a delay like +10m, +2h, +3d",
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidRequest(option, f"{value!r} has no UTC offset; add one, e.g. +00:00 or Z")
    return when


def parse_data(values: Sequence[str], option: str = "--data") -> dict[str, Any]:
    """Merge `--data` values: a JSON object, `key=text`, or `key:=<JSON value>` (typed)."""
    data: dict[str, Any] = {}
    for raw in values:
        text = raw.strip()
        if text.startswith("{"):
            data.update(_json(text, option, want_object=True))
            continue
        key, typed, value = _split_pair(text)
        if not key:
            raise InvalidRequest(
                option, f"expected a JSON object, key=value or key:=<json>, got {raw!r}"
            )
        data[key] = _json(value, f"{option} {key}") if typed else value
    return data


def _split_pair(text: str) -> tuple[str, bool, str]:
    key, sep, value = text.partition("=")
    if not sep:
        return "", False, ""
    typed = key.endswith(":")
    return key.removesuffix(":").strip(), typed, value


def _json(text: str, where: str, *, want_object: bool = False) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRequest(
            where, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    if want_object and not isinstance(value, dict):
        raise InvalidRequest(where, "the JSON must be an object")
    return value


# --- shared output -------------------------------------------------------------------------------


def ui_link(settings: Settings, notification_id: str) -> str:
    return workflow_url(
        settings.temporal_ui_url, settings.temporal_namespace, workflow_id(notification_id)
    )


def progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )


async def wait_all(
    tidings: Tidings, notification_ids: Sequence[str], *, within: float
) -> list[NotificationResult]:
    """Wait (with a progress bar) until each notification has left scheduled/sending, or until
    `within` seconds have passed overall; returns the latest state of each, in order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    limit = asyncio.Semaphore(16)
    with progress() as bar:
        task = bar.add_task("waiting for delivery", total=len(notification_ids))

        async def one(notification_id: str) -> NotificationResult:
            async with limit:
                left = max(0.0, deadline - loop.time())
                result = await tidings.wait_sent(notification_id, within=left)
            bar.advance(task)
            return result

        return list(await asyncio.gather(*(one(n) for n in notification_ids)))
