"""Bulk acceptance: how fast a bulk of recipients, some of them unknown users, is checked and
accepted, through `Tidings.notify_many` and through `POST /v1/notifications/bulk`, and how long
until every accepted recipient's run has been started.

    .venv/bin/python bench/bulk.py [--recipients 10000] [--unknown 0.05] [--workers] [--inline]

Acceptance is the call returning: every recipient checked (one read for the users, one for the
template, renders once per distinct data) and either accepted durably (its notification row
written, its run left to the bulk's fan-out) or rejected by name. Acceptance is not delivery,
nor even a started run: the bench then waits until the fan-out (BulkStartWorkflow, run here by
the bulk worker alone) has started every accepted recipient's run, and prints that time and its
CPU too. By default no notification worker runs, so the runs started are not executed;
`--workers` runs the real workers meanwhile (as in production). `--inline` raises the inline
threshold to the bulk's size: every run started inside the call, as before bulks were accepted
durably (the baseline). Besides the rates it prints CPU per accepted recipient (this process:
client, app and fan-out; the dev server) and the store's SQL statements and transactions per
call: figures that hold on a busy machine where the rates do not.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from activities.bulk import BulkActivities
from activities.notification import NotificationActivities
from bench.meters import cpu_seconds
from bench.sqlcount import SqlCounter, SqlCounts
from bench.stack import TEMPLATE_ID, insert_users, seed, start_dev_server
from starter.client import Tidings
from starter.http import create_app
from tidings import eventloop
from tidings.api_keys import Scope
from tidings.bulks import BulkStatus
from tidings.settings import Settings
from tidings.store import Store
from worker.main import build_senders, build_workers, bulk_worker, run_workers


@dataclass
class Called:
    accepted: int  # accepted durably or started inline
    rejected: int
    bulk_id: str | None


@dataclass
class BulkFigures:
    path: str
    recipients: int
    accepted: int
    rejected: int
    seconds: float
    python_cpu: float
    server_cpu: float | None
    sql: SqlCounts
    # From the call until the fan-out had started every run, and the CPU of the fan-out alone
    # (after the call): None for a bulk started inline.
    all_started: float | None = None
    fanout_python_cpu: float = 0.0
    fanout_server_cpu: float | None = None

    def lines(self) -> list[str]:
        per = max(self.accepted, 1)

        def ms(value: float | None) -> str:
            return "n/a" if value is None else f"{value / per * 1000:.2f} ms"

        lines = [
            f"[{self.path}] bulk accepted/s: {self.accepted / self.seconds:.0f}"
            f" ({self.accepted} accepted, {self.rejected} rejected of {self.recipients}"
            f" in {self.seconds:.2f} s)",
            f"[{self.path}]   CPU per accepted recipient, the call: this process"
            f" {ms(self.python_cpu)}, dev server {ms(self.server_cpu)}",
            f"[{self.path}]   store: {self.sql.statements} SQL statements in"
            f" {self.sql.transactions} transactions for the whole bulk",
        ]
        if self.all_started is None:
            lines.append(f"[{self.path}]   runs started inline: all started when the call returned")
        else:
            lines += [
                f"[{self.path}]   every run started {self.all_started:.2f} s after the call began"
                f" ({self.accepted / self.all_started:.0f} runs started/s)",
                f"[{self.path}]   CPU per accepted recipient, the fan-out: this process"
                f" {ms(self.fanout_python_cpu)}, dev server {ms(self.fanout_server_cpu)}",
            ]
        return lines


def recipients(users: list[str], count: int, unknown: float, rng: random.Random) -> list[str]:
    picked = rng.sample(users, count)
    return [f"ghost-{uuid.uuid4().hex[:8]}" if rng.random() < unknown else u for u in picked]


def _server(before: tuple[float, float | None], after: tuple[float, float | None]) -> float | None:
    return None if after[1] is None or before[1] is None else after[1] - before[1]


async def measure(
    path: str,
    count: int,
    call: Callable[[], Awaitable[Called]],
    counter: SqlCounter,
    tidings: Tidings,
) -> BulkFigures:
    cpu, sql, began = cpu_seconds(), counter.snapshot(), time.monotonic()
    called = await call()
    seconds = time.monotonic() - began
    after = cpu_seconds()
    figures = BulkFigures(
        path,
        count,
        called.accepted,
        called.rejected,
        seconds,
        after[0] - cpu[0],
        _server(cpu, after),
        counter.snapshot().minus(sql),
    )
    if called.bulk_id is not None:
        while (bulk := await tidings.get_bulk(called.bulk_id)).status != BulkStatus.STARTED:
            if bulk.status == BulkStatus.FAILED:
                raise RuntimeError(f"bulk {called.bulk_id} failed: {bulk.reason}")
            await asyncio.sleep(0.05)
        figures.all_started = time.monotonic() - began
        done = cpu_seconds()
        figures.fanout_python_cpu = done[0] - after[0]
        figures.fanout_server_cpu = _server(after, done)
    return figures


@contextlib.asynccontextmanager
async def stack(workers: bool, inline_max: int) -> AsyncIterator[tuple[Tidings, Store]]:
    with tempfile.TemporaryDirectory(prefix="tidings-bulk-") as tmp_name:
        tmp = Path(tmp_name)
        env = await start_dev_server(tmp)
        store = await Store.open(f"sqlite+aiosqlite:///{tmp / 'tidings.db'}")
        try:
            settings = Settings(
                _env_file=None,
                environment="test",
                data_dir=tmp,
                database_url=store.engine.url.render_as_string(hide_password=False),
                task_queue=f"bulk-{uuid.uuid4().hex[:8]}",
                bulk_inline_max=inline_max,
            )
            tidings = Tidings(settings, store, env.client)
            async with contextlib.AsyncExitStack() as running:
                if not workers:  # the fan-out alone: it starts runs nobody executes
                    stop = asyncio.Event()
                    fanout = bulk_worker(env.client, BulkActivities(store), settings.task_queue)
                    task = asyncio.create_task(run_workers([fanout], stop))
                    running.push_async_callback(lambda: task)
                    running.callback(stop.set)
                else:
                    http = await running.enter_async_context(httpx.AsyncClient())
                    senders = build_senders(settings, store, http)
                    built = build_workers(
                        env.client,
                        NotificationActivities(store, senders),
                        task_queue=settings.task_queue,
                        channels=senders,
                    )
                    stop = asyncio.Event()
                    task = asyncio.create_task(run_workers(built, stop))
                    running.push_async_callback(lambda: task)
                    running.callback(stop.set)
                yield tidings, store
        finally:
            await store.close()
            await env.shutdown()


async def run(args: argparse.Namespace) -> list[BulkFigures]:
    rng = random.Random(args.seed)
    inline_max = (
        args.recipients if args.inline else Settings.model_fields["bulk_inline_max"].default
    )
    async with stack(args.workers, inline_max) as (tidings, store):
        await seed(tidings, 1, "https://example.com")  # the templates (one user, never sent to)
        users = [f"bulk-u{i}" for i in range(args.recipients)]
        await insert_users(store, users)
        counter = SqlCounter(store.engine)
        data = {"n": 1, "user": "bench"}
        # Warm-up: imports, connection pools, the template cache.
        await tidings.notify_many(users[:20], TEMPLATE_ID, data=data, channels=["in_app"])
        figures = []

        async def by_client() -> Called:
            chosen = recipients(users, args.recipients, args.unknown, rng)
            result = await tidings.notify_many(chosen, TEMPLATE_ID, data=data)
            return Called(result.accepted + result.started, result.rejected, result.bulk_id)

        figures.append(await measure("client", args.recipients, by_client, counter, tidings))
        print(*figures[-1].lines(), sep="\n", flush=True)

        transport = httpx.ASGITransport(app=create_app(tidings=tidings))
        key = await tidings.create_api_key("bench", [Scope.SEND])
        auth = {"Authorization": f"Bearer {key.key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=auth
        ) as http:

            async def by_http() -> Called:
                chosen = recipients(users, args.recipients, args.unknown, rng)
                body = {"user_ids": chosen, "template_id": TEMPLATE_ID, "data": data}
                r = await http.post("/v1/notifications/bulk", json=body, timeout=600)
                if r.status_code != 202:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:500]}")
                answer = r.json()
                return Called(
                    answer["accepted"] + answer["started"], answer["rejected"], answer["bulk_id"]
                )

            figures.append(await measure("http", args.recipients, by_http, counter, tidings))
            print(*figures[-1].lines(), sep="\n", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipients", type=int, default=10_000)
    p.add_argument("--unknown", type=float, default=0.05, help="share of unknown users")
    p.add_argument("--workers", action="store_true", help="run the workers meanwhile")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument(
        "--inline", action="store_true", help="start every run inside the call (the baseline)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.recipients <= 10_000 or not 0 <= args.unknown <= 1:
        p.error("--recipients: 1 to 10000; --unknown: 0 to 1")
    eventloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
