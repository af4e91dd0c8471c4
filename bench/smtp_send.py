"""CPU per email sent through the email channel (EmailSender) to the dev SMTP sink, with SMTP
connections reused (the default pool) and with a new connection for every message
(TIDINGS_SMTP_POOL_MAX_IDLE=0, as before the pool).

Sender and sink share this process, as in bench/throughput.py, so the CPU counted
(`time.process_time`, every thread) is both sides of the conversation. The two modes alternate,
`--rounds` times each; each measurement follows a few unmeasured sends on the same sender.

    .venv/bin/python bench/smtp_send.py --count 300 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from starter.dev.smtp_sink import SmtpSink
from tidings import eventloop
from tidings.channels.base import OutgoingMessage
from tidings.channels.email import EmailSender
from tidings.models import Channel, RenderedMessage, User
from tidings.settings import Settings

MODES: dict[str, dict[str, Any]] = {"reused": {}, "per message": {"smtp_pool_max_idle": 0}}
WARM_UP = 10


def delivery(i: int) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id=f"bench-{i}",
        idempotency_key=f"bench-{i}:email",
        user=User(id=f"u{i}", email=f"u{i}@example.com"),
        message=RenderedMessage(
            channel=Channel.EMAIL,
            subject="Your order shipped",
            text="Order 42 is on its way.",
            html="<p>Order <b>42</b> is on its way.</p>",
        ),
    )


async def measure(mode: str, count: int, concurrency: int) -> tuple[float, int]:
    """CPU ms per send, and the connections the sink accepted for the measured sends."""
    async with SmtpSink() as sink:
        settings = Settings(
            _env_file=None,
            environment="test",
            smtp_host=sink.host,
            smtp_port=sink.port,
            **MODES[mode],
        )
        sender = EmailSender(settings)
        for i in range(WARM_UP):
            await sender.send(delivery(i))
        sink.clear()
        opened = sink.connections_opened
        queue = list(range(count))

        async def lane() -> None:
            while queue:
                await sender.send(delivery(queue.pop()))

        began = time.process_time()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        cpu = time.process_time() - began
        await sender.aclose()
        if len(sink.messages) != count:
            raise RuntimeError(f"{mode}: {len(sink.messages)} of {count} messages at the sink")
        return cpu / count * 1000, sink.connections_opened - opened


async def main(count: int, rounds: int, concurrency: int) -> None:
    print(
        f"{count} emails per measurement, {concurrency} at a time, load average"
        f" {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else reversed(MODES):
            ms, connections = await measure(mode, count, concurrency)
            results[mode].append(ms)
            print(f"  {mode:<12} {ms:6.2f} ms CPU per email, {connections} connections")
    for mode, values in results.items():
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(f"{mode:<12} mean {sum(values) / len(values):.2f} ms ({listed})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    eventloop.run(main(args.count, args.rounds, args.concurrency), use_uvloop=args.loop == "uvloop")
