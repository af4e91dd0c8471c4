"""Engagement events and the live inbox, measured against real API processes.

    .venv/bin/python bench/engagement.py [--small] [--backend sqlite|postgresql|both]
                                         [--part events|stream|both]

(a) Events per second through `POST /v1/notifications/{id}/events` on one API process (uvicorn
    subprocess), each a new event (its own event_id) on a delivered notification inside its
    engagement window: one database write and one signal RPC to Temporal (a local dev server; no
    run is there to take it, so Temporal answers NOT_FOUND, which costs the same round trip);
    and the API process's CPU time per event, which the machine's other load does not move.
(b) Latency from an inbox item being stored (taken before the store call, in this process, as a
    worker would) to its `item` event arriving at the SSE client of that user, p50/p99, with
    --streams connected streams (one user each) on one API process; and that process's RSS
    before and with the streams.

PostgreSQL at 127.0.0.1:5432 (user postgres) gets a database of its own, dropped afterwards.
Each figure is printed on its own line. Nothing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python bench/engagement.py`), the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from starter.client import Tidings
from starter.dev.devserver import start_retrying
from tidings import eventloop, inbox_tokens
from tidings.api_keys import Scope
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Priority,
    User,
)
from tidings.settings import Settings
from tidings.store import Store
from workflows.converter import DATA_CONVERTER

PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-inbox-secret-0123456789abcdef0123456789"
BIN = Path(sys.executable).parent


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        return
    name = f"tidings_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@contextlib.contextmanager
def api_process(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """One `uvicorn starter.http:app` on a socket bound here first; (base URL, pid)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    command = [sys.executable, "-m", "uvicorn", "starter.http:app", "--fd", str(sock.fileno())]
    command += ["--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "1"]
    process = subprocess.Popen(command, env={**os.environ, **env}, pass_fds=[sock.fileno()])
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        for _ in range(400):
            if process.poll() is not None:
                raise RuntimeError("the API process exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code < 500:
                    break
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sock.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far: what a request costs, however loaded
    the machine is (events/s alone moves with the other work on it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def events_per_second(
    url: str, tidings: Tidings, store: Store, events: int, concurrency: int
) -> float:
    await store.upsert_user(User(id="bench"))
    notifications = [f"bench-{i}" for i in range(max(1, events // 20))]
    for nid in notifications:
        await store.upsert_notification(
            notification_id=nid,
            user_id="bench",
            template_id="welcome",
            template_version=1,
            priority=Priority.MEDIUM,
            status=NotificationStatus.SENT,
            channels=[
                ChannelResult(
                    channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=datetime.now(UTC)
                )
            ],
        )
    key = (await tidings.create_api_key("bench", [Scope.SEND])).key
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(events):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def one(i: int) -> None:
            nid = notifications[i % len(notifications)]
            body = {"type": "clicked", "channel": "email", "event_id": f"e-{i}"}
            r = await http.post(f"/v1/notifications/{nid}/events", json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"{r.status_code}: {r.text}")

        async def drain() -> None:
            while not queue.empty():
                await one(queue.get_nowait())

        await one(-1)  # warm: the first request opens pools
        started = time.perf_counter()
        await asyncio.gather(*(drain() for _ in range(concurrency)))
        return events / (time.perf_counter() - started)


async def stream_latency(
    url: str, pid: int, store: Store, streams: int, items: int
) -> tuple[list[float], float, float]:
    users = [f"s{i:05d}" for i in range(streams)]
    for user in users:
        await store.upsert_user(User(id=user))
    await asyncio.sleep(0.5)
    rss_before = rss_mib(pid)
    expires = datetime.now(UTC) + timedelta(hours=1)
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    connected = 0
    all_connected = asyncio.Event()
    all_arrived = asyncio.Event()
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(120, connect=60)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as http:

        async def listen(user: str) -> None:
            nonlocal connected
            token = inbox_tokens.mint(SECRET, user, expires)
            path = f"/v1/users/{user}/inbox/stream"
            async with http.stream("GET", path, params={"token": token}) as response:
                kind = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "counts":
                        connected += 1
                        if connected == streams:
                            all_connected.set()
                    elif line.startswith("data: ") and kind == "item":
                        nid = json.loads(line[6:])["item"]["notification_id"]
                        arrived[nid] = time.perf_counter()
                        if len(arrived) == items:
                            all_arrived.set()

        tasks = [asyncio.create_task(listen(u)) for u in users]
        await asyncio.wait_for(all_connected.wait(), 300)
        await asyncio.sleep(1)
        rss_with = rss_mib(pid)
        rng = random.Random(7)
        for n in range(items):
            user = rng.choice(users)
            nid = f"item-{n}"
            sent[nid] = time.perf_counter()
            await store.add_inbox_item(user_id=user, notification_id=nid, title="t", body="b")
            await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), 30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [(arrived[n] - sent[n]) * 1000 for n in sent if n in arrived]
    if len(latencies) < items:
        print(f"warning: {items - len(latencies)} of {items} items did not arrive in 30 s")
    return latencies, rss_before, rss_with


async def run(args: argparse.Namespace) -> None:
    env_temporal = await start_retrying(
        lambda: WorkflowEnvironment.start_local(
            data_converter=DATA_CONVERTER, dev_server_existing_path=str(BIN / "temporal")
        )
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in backends:
                for part in ("events", "stream") if args.part == "both" else (args.part,):
                    async with database(backend, Path(tmp)) as url:
                        await measure(args, backend, part, url, env_temporal, Path(tmp))
    finally:
        await env_temporal.shutdown()


async def measure(
    args: argparse.Namespace,
    backend: str,
    part: str,
    database_url: str,
    temporal: WorkflowEnvironment,
    workdir: Path,
) -> None:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        inbox_secret=SECRET,
        data_dir=workdir,
        temporal_address=temporal.client.service_client.config.target_host,
    )
    store = await Store.open(database_url)
    env = {
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_TEMPORAL_ADDRESS": settings.temporal_address,
        "TIDINGS_INBOX_SECRET": SECRET,
        "TIDINGS_DATA_DIR": str(workdir),
    }
    try:
        tidings = Tidings(settings, store, temporal.client)
        with api_process(env) as (url, pid):
            if part == "events":
                cpu_before = cpu_seconds(pid)
                rate = await events_per_second(url, tidings, store, args.events, args.concurrency)
                cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / args.events
                print(f"events_per_second[{backend}, {args.concurrency} clients]: {rate:.0f}")
                print(f"api_cpu_ms_per_event[{backend}]: {cpu_ms:.2f}")
            else:
                latencies, before, with_streams = await stream_latency(
                    url, pid, store, args.streams, args.items
                )
                label = f"{backend}, {args.streams} streams"
                print(f"stream_latency_p50_ms[{label}]: {percentile(latencies, 0.5):.1f}")
                print(f"stream_latency_p99_ms[{label}]: {percentile(latencies, 0.99):.1f}")
                print(f"api_rss_mib_before_streams[{backend}]: {before:.0f}")
                print(f"api_rss_mib_with_streams[{label}]: {with_streams:.0f}")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true", help="a quick run (fewer of everything)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--part", choices=["events", "stream", "both"], default="both")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--items", type=int, default=None)
    args = parser.parse_args()
    args.events = args.events or (300 if args.small else 3000)
    args.streams = args.streams or (100 if args.small else 1000)
    args.items = args.items or (30 if args.small else 200)
    eventloop.run(run(args))
    # The Temporal runtime's threads can call into an interpreter that is finalising ("Fatal
    # Python error: PyGILState_Release"); every figure is printed by now, so leave at once.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
