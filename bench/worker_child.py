"""The bench's worker as a process of its own, as Tidings runs it (`tidings dev` starts
`python -m worker` as a child, production runs it apart): `python -m bench.worker_child CONFIG`.

It runs the real worker's building blocks (build_senders, build_workers through
bench/workers.py, run_workers, the settings read back from TIDINGS_* variables, the event loop
the settings pick) and, on request, the ceiling's trivial Worker, so that the ceiling and the
notifications are measured with one topology: the client in the bench's process, workflows and
activities in this one.

The bench talks to it over a control channel, one JSON object a line: requests on its stdin,
answers on its stdout (anything else the process prints goes to stderr). It answers
`{"ready": true}` once its Workers poll, then one answer per request:

- `{"op": "counts"}`: what it has spent so far (CPU, SQL statements and transactions, the SDK's
  warnings by kind), which the bench subtracts per phase, as it does for its own process;
- `{"op": "trivial", "queue": Q}` / `{"op": "trivial_stop", "queue": Q}`: the ceiling's Worker
  on queue Q, running / stopped.

It stops gracefully when its stdin closes or on SIGTERM (sent by the kernel if the bench dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from temporalio.client import Client
from temporalio.runtime import Runtime

from bench.meters import CoreWarnings
from bench.sqlcount import SqlCounter, SqlCounts
from bench.workers import Tuning, notification_workers, trivial_worker
from starter.dev.devserver import die_with_parent
from starter.dev.worker_process import settings_env
from tidings import eventloop
from tidings.settings import Settings
from tidings.store import Store
from worker.logs import install_log_filter
from worker.main import GRACEFUL_SHUTDOWN, build_senders, close_senders, run_workers
from workflows.connect import connect

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120.0
# Past the worker's own graceful shutdown (it waits for activities in flight), then killed.
STOP_TIMEOUT_SECONDS = GRACEFUL_SHUTDOWN.total_seconds() + 5.0


class WorkerChildError(RuntimeError):
    """The worker child refused a request, or exited."""


@dataclass(frozen=True)
class WorkerCounts:
    """What the worker process has spent since it started."""

    cpu_seconds: float
    sql: SqlCounts
    warnings: dict[str, int]
    samples: dict[str, str] = field(default_factory=dict)  # the first message of each kind

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerCounts:
        return cls(
            cpu_seconds=float(data["cpu_seconds"]),
            sql=SqlCounts(**data["sql"]),
            warnings={str(k): int(n) for k, n in data["warnings"].items()},
            samples={str(k): str(v) for k, v in data.get("samples", {}).items()},
        )


# --- the child -------------------------------------------------------------------------------


class Child:
    """The worker process's side of the control channel."""

    def __init__(self, client: Client, tuning: Tuning, warnings: CoreWarnings, sql: SqlCounter):
        self.client = client
        self.tuning = tuning
        self.warnings = warnings
        self.sql = sql
        self.trivial: dict[str, contextlib.AsyncExitStack] = {}

    def counts(self) -> WorkerCounts:
        return WorkerCounts(
            cpu_seconds=time.process_time(),
            sql=self.sql.snapshot(),
            warnings=dict(self.warnings.counts),
            samples=dict(self.warnings.samples),
        )

    async def answer(self, line: str) -> dict[str, Any]:
        """The answer to one request line; a request it cannot serve gets {"error": ...}."""
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            return {"error": f"not a request: {line.strip()[:200]!r}"}
        if op == "counts":
            return self.counts().to_json()
        if op == "trivial":
            queue = str(request.get("queue") or "")
            if not queue or queue in self.trivial:
                return {"error": f"trivial: queue {queue!r} is empty or already served"}
            running = contextlib.AsyncExitStack()
            await running.enter_async_context(trivial_worker(self.client, queue, self.tuning))
            self.trivial[queue] = running
            return {"ok": True}
        if op == "trivial_stop":
            stopping = self.trivial.pop(str(request.get("queue")), None)
            if stopping is None:
                return {"error": f"trivial_stop: no Worker on queue {request.get('queue')!r}"}
            await stopping.aclose()
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    async def serve(self, requests: asyncio.StreamReader, out: TextIO) -> None:
        """Answer requests until the bench closes the channel."""
        try:
            while line := (await requests.readline()).decode():
                out.write(json.dumps(await self.answer(line)) + "\n")
                out.flush()
        finally:
            for running in self.trivial.values():
                await running.aclose()
            self.trivial.clear()


async def _child(settings: Settings, tuning: Tuning, search_path: str | None, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    install_log_filter()
    warnings = CoreWarnings()
    Runtime.set_default(warnings.runtime())  # the SDK core's warnings of this process, counted
    # Counted rather than printed, as the bench counts its own (throughput.py _counted).
    activity_log = logging.getLogger("temporalio.activity")
    activity_log.addHandler(warnings)
    activity_log.propagate = False
    requests = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    # The bench's throwaway PostgreSQL schema, as its own store has it (bench/stack.py _store).
    server_settings = None if search_path is None else {"search_path": search_path}
    store = await Store.open(
        settings.resolved_database_url,
        connect_args=None if server_settings is None else {"server_settings": server_settings},
    )
    try:
        child = Child(await connect(settings), tuning, warnings, SqlCounter(store.engine))
        async with httpx.AsyncClient(follow_redirects=False) as http:
            senders = build_senders(settings, store, http)
            try:
                workers = notification_workers(child.client, store, senders, settings, tuning)
                running = asyncio.Event()
                task = asyncio.create_task(run_workers(workers, stop, running))
                ready = asyncio.create_task(running.wait())
                await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    ready.cancel()
                    await task  # its error, if it failed to start
                    return
                out.write(json.dumps({"ready": True}) + "\n")
                out.flush()
                serving = asyncio.create_task(child.serve(requests, out))
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
                serving.cancel()
                stopped.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                stop.set()
                await task
            finally:
                await close_senders(senders)
    finally:
        await store.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    config = json.loads(sys.argv[1])
    settings = Settings()
    # The control channel keeps the real stdout; whatever else would be printed goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    eventloop.run(
        _child(settings, Tuning(**config["tuning"]), config.get("search_path"), out),
        use_uvloop=settings.uvloop,
    )


# --- the bench's side ------------------------------------------------------------------------


class WorkerChild:
    """The bench's handle on its worker process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.last_samples: dict[str, str] = {}
        self._lock = asyncio.Lock()  # one request in flight: answers come back in order

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, settings: Settings, tuning: Tuning, search_path: str | None = None
    ) -> AsyncIterator[WorkerChild]:
        """The worker process, running its Workers until the block ends."""
        # The bench's TIDINGS_* variables are replaced, not merged, as `tidings dev` does.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        config = {"tuning": asdict(tuning), "search_path": search_path}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker_child", json.dumps(config),
            cwd=ROOT,
            env={**inherited, **settings_env(settings)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C reaches the bench, which stops it in order; the kernel
            # SIGTERMs it if the bench dies outright.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
        child = cls(process)
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await child._read()
            yield child
        finally:
            await child.stop()

    async def counts(self) -> WorkerCounts:
        counts = WorkerCounts.from_json(await self._ask({"op": "counts"}))
        self.last_samples = counts.samples
        return counts

    @contextlib.asynccontextmanager
    async def trivial(self, queue: str) -> AsyncIterator[None]:
        """The ceiling's Worker on `queue`, in the worker process, for the block."""
        await self._ask({"op": "trivial", "queue": queue})
        try:
            yield
        finally:
            await self._ask({"op": "trivial_stop", "queue": queue})

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        async with self._lock:
            stdin.write((json.dumps(request) + "\n").encode())
            await stdin.drain()
            return await self._read()

    async def _read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        line = await stdout.readline()
        if not line:
            code = await self.process.wait()
            raise WorkerChildError(f"the bench's worker process exited (code {code})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerChildError(f"the bench's worker process refused: {answer['error']}")
        return answer

    async def stop(self) -> None:
        """Close the channel (the worker's graceful stop); SIGKILL if it outlasts it."""
        proc = self.process
        if proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self._kill()
            await proc.wait()
        except asyncio.CancelledError:
            self._kill()
            raise

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
