"""The outcome of a set of webhook notifications, read from both sides: the provider's log (what
the receiver answered, per webhook-id) and the store (each notification's status). The verdict
says whether they agree: every notification ended in a final status, exactly the recipients the
provider made gone are `failed`, and no webhook-id got more than one 2xx."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bench.stack import BenchStack
from tidings.delivery import ledger_key
from tidings.models import Channel, DeliveryStatus, NotificationStatus

STATUS_POLL_SECONDS = 0.25
_OPEN = (NotificationStatus.SCHEDULED.value, NotificationStatus.SENDING.value)

Statuses = dict[str, tuple[str, str | None]]  # notification id -> (its status, webhook's)
Log = dict[str, list[tuple[float, int]]]  # notification id -> (wall time, status) per request


@dataclass
class Verdict:
    """Whether the provider's log and the store agree that nothing was lost or duplicated."""

    expected: int
    delivered: int  # the store says the webhook channel was delivered
    failed: int  # the store says it failed
    not_final: int  # absent, scheduled or sending when the wait ended: lost or stuck
    gone: int  # recipients the provider made fail permanently
    failed_not_gone: int  # failed although the provider never refused them for good
    gone_not_failed: int
    duplicated: int  # webhook-ids that got more than one 2xx
    delivered_without_2xx: int
    waited_seconds: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        wrong = self.failed_not_gone + self.gone_not_failed + self.delivered_without_2xx
        complete = self.delivered + self.failed == self.expected
        return complete and not (self.timed_out or self.not_final or self.duplicated or wrong)

    def line(self) -> str:
        if self.failed_not_gone or self.gone_not_failed:
            failed = (
                f"{self.failed_not_gone} failed though not gone,"
                f" {self.gone_not_failed} gone but not failed"
            )
        else:
            failed = f"failed = exactly the {self.gone} gone recipients"
        parts = [
            f"{self.delivered + self.failed}/{self.expected} final"
            f" ({self.delivered} delivered, {self.failed} failed)",
            f"{self.not_final} lost or stuck",
            failed,
            f"{self.duplicated} duplicated",
        ]
        if self.delivered_without_2xx:
            parts.append(f"{self.delivered_without_2xx} delivered without a 2xx")
        if self.timed_out:
            parts.append(f"gave up waiting after {self.waited_seconds:.0f} s")
        return f"verdict {'OK' if self.ok else 'NOT OK'}: " + "; ".join(parts)


def _final(pair: tuple[str, str | None] | None) -> bool:
    if pair is None or pair[0] in _OPEN or pair[1] is None:
        return False
    return DeliveryStatus(pair[1]).final


async def wait_final(
    stack: BenchStack, prefix: str, ids: Collection[str], within: float
) -> tuple[Statuses, float, bool]:
    """Poll the store until every id's notification and webhook channel are final, or `within`
    seconds pass; returns the statuses, the seconds waited and whether it ran out."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        statuses = await stack.webhook_statuses(prefix)
        if all(_final(statuses.get(nid)) for nid in ids):
            return statuses, loop.time() - began, False
        if loop.time() - began >= within:
            return statuses, loop.time() - began, True
        await asyncio.sleep(STATUS_POLL_SECONDS)


def provider_log(stack: BenchStack, ids: Collection[str]) -> Log:
    hooks = {ledger_key(nid, Channel.WEBHOOK): nid for nid in ids}
    log: Log = {nid: [] for nid in ids}
    for request in stack.receiver.received:
        nid = hooks.get(request.headers.get("webhook-id", ""))
        if nid is not None and request.status is not None:
            log[nid].append((request.received_at.timestamp(), request.status))
    for entries in log.values():
        entries.sort()
    return log


def ok_status(status: int) -> bool:
    return 200 <= status < 300


def first_2xx(entries: Sequence[tuple[float, int]]) -> float | None:
    return next((at for at, status in entries if ok_status(status)), None)


def judge(
    ids: Collection[str],
    statuses: Statuses,
    log: Log,
    gone: Collection[str],
    waited: float,
    timed_out: bool,
) -> Verdict:
    gone_ids = {nid for nid in ids if ledger_key(nid, Channel.WEBHOOK) in gone}
    channel = {nid: statuses[nid][1] if nid in statuses else None for nid in ids}
    delivered = {nid for nid, s in channel.items() if s == DeliveryStatus.DELIVERED.value}
    failed = {nid for nid, s in channel.items() if s == DeliveryStatus.FAILED.value}
    return Verdict(
        expected=len(ids),
        delivered=len(delivered),
        failed=len(failed),
        not_final=sum(1 for nid in ids if not _final(statuses.get(nid))),
        gone=len(gone_ids),
        failed_not_gone=len(failed - gone_ids),
        gone_not_failed=len(gone_ids - failed),
        duplicated=sum(1 for nid in ids if sum(ok_status(s) for _, s in log[nid]) > 1),
        delivered_without_2xx=sum(1 for nid in delivered if first_2xx(log[nid]) is None),
        waited_seconds=waited,
        timed_out=timed_out,
    )
