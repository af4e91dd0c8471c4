"""What planning and each send read about a recipient, in ONE read transaction.

Planning used to read the user, the preferences and the devices in three transactions, and each
channel's send read the ledger and the user again in two: about a third of a notification's store
transactions. The template is not here: its pinned version is served from the Store's memory.

Every notification runs these reads once per plan and once per channel, so they are Core selects
built once per store with the ids bound at execution: building an ORM lookup per call (cache key,
identity map, loading the entity) cost more CPU than the query itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.models import Device, Preferences, User
from tidings.store.base import StoreBase
from tidings.store.ledger import LedgerEntry, _entry
from tidings.store.tables import DeviceRow, LedgerRow, PreferencesRow, UserRow
from tidings.store.users import _device, _preferences, _user

_PREFS = "prefs_"  # the preferences' columns in the joined user row


@dataclass
class RecipientState:
    user: User | None  # None: the user was deleted while the notification waited
    preferences: Preferences | None = None  # asked for: stored ones or the defaults
    devices: list[Device] = field(default_factory=list)  # asked for
    ledger: LedgerEntry | None = None  # asked for: this send's entry, if it was made before


@dataclass(frozen=True)
class _Reads:
    user: Select[Any]
    user_and_preferences: Select[Any]  # preferences' columns prefixed, NULL when none stored
    devices: Select[Any]
    ledger: Select[Any]


def _build() -> _Reads:
    users = cast(Any, UserRow.__table__)
    prefs = cast(Any, PreferencesRow.__table__)
    devices = cast(Any, DeviceRow.__table__)
    ledger = cast(Any, LedgerRow.__table__)
    by_user = users.c.id == bindparam("user_id")
    joined = select(*users.c, *(c.label(_PREFS + c.name) for c in prefs.c)).select_from(
        users.outerjoin(prefs, prefs.c.user_id == users.c.id)
    )
    return _Reads(
        user=select(*users.c).where(by_user),
        user_and_preferences=joined.where(by_user),
        devices=select(*devices.c)
        .where(devices.c.user_id == bindparam("user_id"))
        .order_by(devices.c.created_at, devices.c.platform, devices.c.token_sha256),
        ledger=select(*ledger.c).where(ledger.c.key == bindparam("key")),
    )


class SendingMixin(StoreBase):
    _recipient_reads: _Reads | None = None  # built on first use

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
        if self._recipient_reads is None:
            self._recipient_reads = _build()
        reads = self._recipient_reads
        async with self._read() as session:
            conn = await session.connection()
            ledger = None
            if ledger_key is not None:
                entry = (await conn.execute(reads.ledger, {"key": ledger_key})).one_or_none()
                ledger = None if entry is None else _entry(cast(LedgerRow, entry))
            stmt = reads.user_and_preferences if preferences else reads.user
            row = (await conn.execute(stmt, {"user_id": user_id})).one_or_none()
            if row is None:
                return RecipientState(user=None, ledger=ledger)
            state = RecipientState(user=_user(cast(UserRow, row)), ledger=ledger)
            if preferences:
                state.preferences = _joined_preferences(row, user_id)
            if devices:
                state.devices = await _devices(conn, reads.devices, user_id)
            return state


def _joined_preferences(row: Any, user_id: str) -> Preferences:
    mapping = row._mapping
    if mapping[_PREFS + "user_id"] is None:  # none stored: the defaults
        return Preferences(user_id=user_id)
    columns = {
        name[len(_PREFS) :]: value for name, value in mapping.items() if name.startswith(_PREFS)
    }
    return _preferences(cast(PreferencesRow, _Columns(columns)))


class _Columns:
    """A row's columns as attributes, for the converters that read ORM rows."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.__dict__.update(columns)


async def _devices(conn: AsyncConnection, stmt: Select[Any], user_id: str) -> list[Device]:
    rows = await conn.execute(stmt, {"user_id": user_id})
    return [_device(cast(DeviceRow, d)) for d in rows]
