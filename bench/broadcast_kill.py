"""`bench/broadcast.py --kill-worker K`: the same broadcast (email and in-app to every user) with
the worker as a process of its own (`python -m worker`), killed with SIGKILL K times while it
sends and restarted at once; then every arrival is counted at the SMTP sink and in the inbox.

In-app must be exactly once (the inbox item and its record are one transaction). Email is
at-least-once: a recipient sent but not yet recorded when the worker died is sent again by the
retried batch, with the same Message-ID; none may be lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, select

from bench.stack import start_dev_server
from starter.client import Tidings
from starter.dev.smtp_sink import SmtpSink
from tidings.models import Channel
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.tables import InboxRow
from workflows.broadcast_io import BroadcastProgress

ROOT = Path(__file__).resolve().parent.parent


async def _start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while b"worker running" not in await proc.stderr.readline():
            pass
    asyncio.get_running_loop().create_task(proc.stderr.read())  # never let the pipe fill
    return proc


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure_with_kills(
    n: int,
    kills: int,
    *,
    page_size: int,
    concurrency: int,
    add_audience: Callable[[Tidings, Store, int], Awaitable[None]],
    template_id: str,
    prefix: str,
    say: Callable[[str], None],
) -> None:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-kill-") as tmp_name:
        tmp = Path(tmp_name)
        env_ = await start_dev_server(tmp)
        try:
            async with SmtpSink() as sink:
                settings = Settings(
                    _env_file=None,
                    environment="test",
                    data_dir=tmp,
                    database_url=f"sqlite+aiosqlite:///{tmp / 'tidings.db'}",
                    task_queue=f"bench-kill-{uuid.uuid4().hex[:8]}",
                    smtp_port=sink.port,
                )
                store = await Store.open(settings.resolved_database_url)
                tidings = Tidings(settings, store, env_.client)
                await add_audience(tidings, store, n)
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
                    "TIDINGS_ENVIRONMENT": "test",
                    "TIDINGS_DATA_DIR": str(tmp),
                    "TIDINGS_TEMPORAL_ADDRESS": env_.client.service_client.config.target_host,
                    "TIDINGS_DATABASE_URL": settings.resolved_database_url,
                    "TIDINGS_TASK_QUEUE": settings.task_queue,
                    "TIDINGS_SMTP_PORT": str(sink.port),
                }
                worker = await _start_worker(env)
                peak = 0.0
                began = time.monotonic()
                ref = await tidings.broadcast(
                    template_id,
                    "all",
                    {"n": 1},
                    [Channel.EMAIL, Channel.IN_APP],
                    page_size=page_size,
                    concurrency=concurrency,
                )
                for k in range(1, kills + 1):
                    while True:
                        if len(sink.messages) >= n * k // (kills + 1):
                            break
                        await asyncio.sleep(0.05)
                    peak = max(peak, _peak_rss_mb(worker.pid))
                    os.killpg(worker.pid, signal.SIGKILL)
                    await worker.wait()
                    say(f"killed the worker (kill -9) at {len(sink.messages)} emails received")
                    worker = await _start_worker(env)
                handle = env_.client.get_workflow_handle(
                    ref.workflow_id, result_type=BroadcastProgress
                )
                result = await handle.result()
                seconds = time.monotonic() - began
                peak = max(peak, _peak_rss_mb(worker.pid))
                worker.send_signal(signal.SIGTERM)
                await worker.wait()

                mails = [m for m in sink.messages if m.rcpt_tos[0].startswith(prefix)]
                per_user = Counter(m.rcpt_tos[0] for m in mails)
                ids_per_user: dict[str, set[str | None]] = {}
                for m in mails:
                    ids_per_user.setdefault(m.rcpt_tos[0], set()).add(m.message_id)
                same_id = all(len(ids) == 1 for ids in ids_per_user.values())
                async with store.engine.connect() as conn:
                    rows = await conn.execute(
                        select(InboxRow.notification_id, func.count())
                        .where(InboxRow.user_id.startswith(prefix))
                        .group_by(InboxRow.notification_id)
                    )
                    inbox = Counter({nid: int(c) for nid, c in rows.all()})
                await store.close()
                email = result.counters.channels[Channel.EMAIL]
                say(
                    f"broadcast {result.status} in {seconds:.1f} s, runs {result.runs};"
                    f" counters: email sent {email.sent}, failed {email.failed}"
                )
                say(f"worker killed (kill -9): {kills} times")
                say(f"email recipients lost: {n - len(per_user)}")
                say(
                    f"email duplicates: {sum(per_user.values()) - len(per_user)}"
                    f" (same Message-ID: {'yes' if same_id else 'NO'})"
                )
                say(f"in-app recipients lost: {n - len(inbox)}")
                say(f"in-app sent twice: {sum(1 for c in inbox.values() if c > 1)}")
                say(f"worker peak RSS MB (the worker process alone): {peak:.0f}")
        finally:
            await env_.shutdown()
