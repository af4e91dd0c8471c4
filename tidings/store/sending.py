"""What planning and each send read about a recipient, in ONE read transaction.

Planning used to read the user, the preferences and the devices in three transactions, and each
channel's send read the ledger and the user again in two: about a third of a notification's store
transactions. The template is not here: its pinned version is served from the Store's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.models import Device, Preferences, User
from tidings.store.base import StoreBase
from tidings.store.ledger import LedgerEntry, _entry
from tidings.store.tables import LedgerRow, PreferencesRow, UserRow
from tidings.store.users import _device, _preferences, _user, devices_of


@dataclass
class RecipientState:
    user: User | None  # None: the user was deleted while the notification waited
    preferences: Preferences | None = None  # asked for: stored ones or the defaults
    devices: list[Device] = field(default_factory=list)  # asked for
    ledger: LedgerEntry | None = None  # asked for: this send's entry, if it was made before


class SendingMixin(StoreBase):
    async def recipient_state(
        self,
        user_id: str,
        *,
        preferences: bool = False,
        devices: bool = False,
        ledger_key: str | None = None,
    ) -> RecipientState:
        """The user and, as asked, their preferences, their devices and one ledger entry, from
        one consistent snapshot."""
        async with self._read() as session:
            ledger = None
            if ledger_key is not None:
                entry = await session.get(LedgerRow, ledger_key)
                ledger = None if entry is None else _entry(entry)
            row = await session.get(UserRow, user_id)
            if row is None:
                return RecipientState(user=None, ledger=ledger)
            state = RecipientState(user=_user(row), ledger=ledger)
            if preferences:
                prefs = await session.get(PreferencesRow, user_id)
                state.preferences = (
                    Preferences(user_id=user_id) if prefs is None else _preferences(prefs)
                )
            if devices:
                rows = await session.scalars(devices_of(user_id))
                state.devices = [_device(d) for d in rows]
            return state
