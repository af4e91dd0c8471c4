"""The event loop a Tidings process runs on: uvloop where it is installed, asyncio's own otherwise.

A worker's CPU per notification is spent in good part in the loop itself: every store call hands
off to aiosqlite's thread (or asyncpg's socket), and every activity and workflow activation comes
back from the SDK's core threads through `call_soon_threadsafe`. uvloop runs those callbacks and
hand-offs in C (README, "Issue 13, seventh round"). `TIDINGS_UVLOOP=false` keeps asyncio's loop,
and a platform without a uvloop wheel (Windows) gets asyncio's loop without being asked.
The HTTP API run as `uvicorn starter.http:app` picks uvloop by itself (uvicorn's `--loop auto`);
`--loop asyncio` turns it off there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default loop) when not wanted or not installed."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks (asyncio.Runner: Python 3.11 has no
    `loop_factory` argument to asyncio.run)."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)
