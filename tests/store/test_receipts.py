"""Receipts find their send through the ledger, and settle it even when they arrive before the
workflow's own result reached the read model; the late `sent` never undoes them."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.store.test_notifications import record
from tidings.models import Channel, ChannelResult, DeliveryStatus
from tidings.receipts import DeliveryReceipt
from tidings.store import LedgerEntry, Store

SENT_AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


async def _accepted(store: Store, notification_id: str, sid: str) -> None:
    """What the deliver activity writes the moment the provider accepted."""
    await store.ledger_put(
        LedgerEntry(
            key=f"{notification_id}:sms",
            notification_id=notification_id,
            channel=Channel.SMS,
            target="+1555***0100",
            provider_message_id=sid,
            sent_at=SENT_AT,
        )
    )


def _delivered(notification_id: str) -> DeliveryReceipt:
    return DeliveryReceipt(
        notification_id=notification_id,
        channel=Channel.SMS,
        status=DeliveryStatus.DELIVERED,
        reason="twilio: delivered",
    )


async def test_a_receipt_before_the_workflow_recorded_the_send_settles_it(store: Store) -> None:
    await record(store, "n-1")
    await store.upsert_delivery(
        "n-1", ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENDING)
    )
    await _accepted(store, "n-1", "SM123")

    assert await store.find_by_provider_id(Channel.SMS, "SM123") == "n-1"
    applied = await store.apply_receipt(_delivered("n-1"))
    assert applied is not None and applied.status is DeliveryStatus.DELIVERED
    assert applied.provider_message_id == "SM123" and applied.target == "+1555***0100"

    # The workflow's own result lands afterwards: it must not move the channel back.
    late = ChannelResult(
        channel=Channel.SMS, status=DeliveryStatus.SENT, provider_message_id="SM123", attempts=1
    )
    await store.upsert_delivery("n-1", late)
    got = await store.get_notification("n-1")
    assert got is not None
    [sms] = got.channels
    assert (sms.status, sms.reason) == (DeliveryStatus.DELIVERED, "twilio: delivered")
    # A repeated receipt changes nothing and says so.
    assert await store.apply_receipt(_delivered("n-1")) is None


async def test_a_record_of_several_channels_keeps_a_receipts_settlement(store: Store) -> None:
    """The run's record writes its channels in one go; the settled one stays settled, the
    others take the record's status."""
    await record(store, "n-1")
    await store.upsert_delivery(
        "n-1", ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENDING)
    )
    await _accepted(store, "n-1", "SM123")
    assert await store.apply_receipt(_delivered("n-1")) is not None
    sent = [
        ChannelResult(channel=c, status=DeliveryStatus.SENT, attempts=1)
        for c in (Channel.EMAIL, Channel.SMS, Channel.PUSH)
    ]
    await record(store, "n-1", channels=sent)
    got = await store.get_notification("n-1")
    assert got is not None
    statuses = {c.channel: c.status for c in got.channels}
    assert statuses == {
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.SMS: DeliveryStatus.DELIVERED,
        Channel.PUSH: DeliveryStatus.SENT,
    }


async def test_a_receipt_with_no_channel_row_yet_creates_it_from_the_ledger(store: Store) -> None:
    await record(store, "n-2")
    await _accepted(store, "n-2", "SM456")
    applied = await store.apply_receipt(_delivered("n-2"))
    assert applied is not None and applied.at == SENT_AT
    got = await store.get_notification("n-2")
    assert got is not None and [c.status for c in got.channels] == [DeliveryStatus.DELIVERED]


async def test_a_receipt_for_nothing_sent_changes_nothing(store: Store) -> None:
    await record(store, "n-3")
    await store.upsert_delivery(
        "n-3", ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENDING)
    )
    assert await store.find_by_provider_id(Channel.SMS, "SM-unknown") is None
    assert await store.apply_receipt(_delivered("n-3")) is None
    assert await store.apply_receipt(_delivered("no-such-notification")) is None
    got = await store.get_notification("n-3")
    assert got is not None and [c.status for c in got.channels] == [DeliveryStatus.SENDING]


async def test_a_failed_send_is_not_revived_by_a_later_sending(store: Store) -> None:
    """Forward only in general: the row keeps the workflow's final word over a stale one."""
    await record(store, "n-4")
    failed = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.FAILED, reason="550")
    await store.upsert_delivery("n-4", failed)
    await store.upsert_delivery(
        "n-4", ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENDING)
    )
    got = await store.get_notification("n-4")
    assert got is not None and [c.status for c in got.channels] == [DeliveryStatus.FAILED]
