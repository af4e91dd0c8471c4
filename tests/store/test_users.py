from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from tidings.models import (
    Channel,
    DeliveryStatus,
    Device,
    Platform,
    Preferences,
    QuietHours,
    User,
)
from tidings.store import LedgerEntry, Store


async def test_user_round_trip_and_update(store: Store) -> None:
    user = User(
        id="grace",
        email="grace@example.com",
        phone="+14155552671",
        timezone="America/New_York",
        locale="en-US",
        webhook_url="https://hooks.example.com/grace",
        webhook_urls=["https://crm.example.com/in", "https://audit.example.com/in"],
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/x",
        slack_user_id="U123ABC",
        attributes={"plan": "pro", "seats": 3, "ratio": 0.5, "beta": True, "none": None},
    )
    assert await store.upsert_user(user) == user
    assert await store.get_user("grace") == user

    changed = user.model_copy(update={"email": None, "attributes": {"plan": "free"}})
    assert await store.upsert_user(changed) == changed
    assert await store.get_user("grace") == changed


async def test_missing_user_is_none(store: Store) -> None:
    assert await store.get_user("nobody") is None


async def test_list_users_pages_in_id_order(store: Store) -> None:
    for user_id in ["carol", "alice", "bob"]:
        await store.upsert_user(User(id=user_id))
    assert [u.id for u in await store.list_users()] == ["alice", "bob", "carol"]
    assert [u.id for u in await store.list_users(limit=2)] == ["alice", "bob"]
    assert [u.id for u in await store.list_users(limit=2, offset=2)] == ["carol"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_users(limit=0)
    with pytest.raises(ValueError, match="offset"):
        await store.list_users(offset=-1)


async def test_devices_are_idempotent_on_platform_and_token(store: Store, user: User) -> None:
    phone = Device(user_id=user.id, platform=Platform.FCM, token="fcm-token-1", label="pixel")
    assert await store.add_device(phone) == phone
    assert await store.add_device(phone) == phone
    # The same token string on the other platform is another device.
    tablet = Device(user_id=user.id, platform=Platform.APNS, token="fcm-token-1")
    await store.add_device(tablet)
    assert await store.list_devices(user.id) == [phone, tablet]


async def test_long_tokens_are_stored_whole(store: Store, user: User) -> None:
    device = Device(user_id=user.id, platform=Platform.APNS, token="x" * 4096)
    await store.add_device(device)
    assert await store.list_devices(user.id) == [device]


async def test_registering_a_token_for_another_user_moves_it(store: Store, user: User) -> None:
    other = await store.upsert_user(User(id="bob"))
    await store.add_device(Device(user_id=user.id, platform=Platform.FCM, token="shared-token"))
    moved = await store.add_device(
        Device(user_id=other.id, platform=Platform.FCM, token="shared-token", label="new owner")
    )
    assert moved.user_id == "bob"
    assert await store.list_devices(user.id) == []
    assert await store.list_devices(other.id) == [moved]


async def test_remove_device(store: Store, user: User) -> None:
    await store.add_device(Device(user_id=user.id, platform=Platform.FCM, token="to-remove-1"))
    assert await store.remove_device(Platform.APNS, "to-remove-1") is False
    assert await store.remove_device(Platform.FCM, "to-remove-1") is True
    assert await store.remove_device(Platform.FCM, "to-remove-1") is False
    assert await store.list_devices(user.id) == []


async def test_device_for_unknown_user_is_refused_and_not_stored(store: Store) -> None:
    with pytest.raises(LookupError, match="user ghost not found"):
        await store.add_device(Device(user_id="ghost", platform=Platform.FCM, token="ghost-token"))
    assert await store.list_devices("ghost") == []


async def test_preferences_default_to_everything_on(store: Store, user: User) -> None:
    prefs = await store.get_preferences(user.id)
    assert prefs == Preferences(user_id=user.id)
    assert prefs.channels == {} and prefs.quiet_hours is None


async def test_preferences_round_trip_and_replace(store: Store, user: User) -> None:
    prefs = Preferences(
        user_id=user.id,
        channels={Channel.SMS: False},
        categories={"marketing": {Channel.EMAIL: False, Channel.PUSH: True}},
        templates={"weekly-digest": {Channel.IN_APP: False}},
        quiet_hours=QuietHours(start=time(22, 0), end=time(7, 30)),
    )
    assert await store.set_preferences(prefs) == prefs
    assert await store.get_preferences(user.id) == prefs

    cleared = Preferences(user_id=user.id, channels={Channel.SMS: True})
    assert await store.set_preferences(cleared) == cleared
    assert await store.get_preferences(user.id) == cleared


async def test_preferences_for_unknown_user_are_refused(store: Store) -> None:
    with pytest.raises(LookupError, match="user ghost not found"):
        await store.set_preferences(Preferences(user_id="ghost", channels={Channel.SMS: False}))
    assert await store.get_preferences("ghost") == Preferences(user_id="ghost")


async def test_get_users_reads_a_bulk_and_leaves_out_the_unknown(store: Store) -> None:
    for i in range(1200):  # more than one IN chunk
        await store.upsert_user(User(id=f"many_{i}", email=f"m{i}@example.com"))
    found = await store.get_users([f"many_{i}" for i in range(1200)] + ["ghost", "many_3"])
    assert len(found) == 1200 and "ghost" not in found
    assert found["many_3"].email == "m3@example.com"
    assert await store.get_users([]) == {}


async def test_recipient_state_reads_what_is_asked_in_one_snapshot(store: Store) -> None:
    await store.upsert_user(User(id="rs", email="rs@example.com"))
    await store.add_device(Device(user_id="rs", platform=Platform.FCM, token="token-one"))
    await store.set_preferences(Preferences(user_id="rs", channels={Channel.EMAIL: False}))
    bare = await store.recipient_state("rs")
    assert bare.user is not None and bare.user.email == "rs@example.com"
    assert (bare.preferences, bare.devices, bare.ledger) == (None, [], None)
    full = await store.recipient_state("rs", preferences=True, devices=True, ledger_key="k")
    assert full.preferences is not None and full.preferences.channels == {Channel.EMAIL: False}
    assert [d.token for d in full.devices] == ["token-one"] and full.ledger is None
    entry = LedgerEntry(
        key="k", notification_id="n", channel=Channel.EMAIL, target="rs@example.com",
        status=DeliveryStatus.SENT, provider_message_id=None, sent_at=datetime.now(UTC),
    )  # fmt: skip
    await store.ledger_put(entry)
    assert (await store.recipient_state("rs", ledger_key="k")).ledger == entry
    gone = await store.recipient_state("nobody", preferences=True, ledger_key="k")
    assert gone.user is None and gone.ledger == entry and gone.preferences is None
    await store.upsert_user(User(id="rs2"))
    defaults = await store.recipient_state("rs2", preferences=True)
    assert defaults.preferences == Preferences(user_id="rs2")  # nothing stored: the defaults


async def test_recipient_state_joins_every_device_with_one_user_and_entry(store: Store) -> None:
    """One row per device in the joined read: the user, preferences and entry once each."""
    await store.upsert_user(User(id="rd", email="rd@example.com"))
    await store.set_preferences(Preferences(user_id="rd", channels={Channel.PUSH: True}))
    tokens = [f"device-token-{i}" for i in range(3)]
    for token in tokens:
        await store.add_device(Device(user_id="rd", platform=Platform.FCM, token=token))
    entry = LedgerEntry(key="kd", notification_id="n", channel=Channel.PUSH, target="fcm")
    await store.ledger_put(entry)
    state = await store.recipient_state("rd", preferences=True, devices=True, ledger_key="kd")
    assert [d.token for d in state.devices] == tokens  # in the order they were added
    assert state.preferences is not None and state.preferences.channels == {Channel.PUSH: True}
    assert state.ledger == entry and state.user is not None and state.user.id == "rd"
    gone = await store.recipient_state("nobody", devices=True, engagement_since=datetime.now(UTC))
    assert (gone.user, gone.devices, gone.channel_engagement) == (None, [], None)
    none_yet = await store.recipient_state("rd", engagement_since=datetime.now(UTC))
    assert none_yet.channel_engagement == {}
