"""tidings.eventloop: the worker and the CLI run on uvloop where it is installed, and a setting
turns it off."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from tidings import eventloop
from tidings.settings import Settings


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_runs_on_uvloop_by_default() -> None:
    assert eventloop.run(_loop_type()) is uvloop.Loop


def test_runs_on_asyncios_loop_when_turned_off() -> None:
    loop_type = eventloop.run(_loop_type(), use_uvloop=False)
    assert loop_type is not uvloop.Loop
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_falls_back_to_asyncio_where_uvloop_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` sees without it
    assert eventloop.loop_factory(True) is None
    assert eventloop.run(_loop_type()) is not uvloop.Loop


def test_the_setting_defaults_on_and_reads_tidings_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_UVLOOP", raising=False)
    assert Settings(_env_file=None).uvloop is True
    monkeypatch.setenv("TIDINGS_UVLOOP", "false")
    assert Settings(_env_file=None).uvloop is False


def test_the_result_and_exceptions_come_back() -> None:
    async def boom() -> None:
        raise LookupError("from the coroutine")

    async def value() -> int:
        return 7

    assert eventloop.run(value()) == 7
    with pytest.raises(LookupError, match="from the coroutine"):
        eventloop.run(boom())
