"""What planning and each send read about a recipient, in ONE read transaction.

Planning used to read the user, the preferences and the devices in three transactions, and each
channel's send read the ledger and the user again in two: about a third of a notification's store
transactions. The template is not here: its pinned version is served from the Store's memory.

Every notification runs these reads once per plan and once per channel, so they are Core selects
built once per store with the ids bound at execution: building an ORM lookup per call (cache key,
identity map, loading the entity) cost more CPU than the query itself. What a call asks for is
joined into one statement (a statement costs about as much CPU again as the rows it reads); only
the plan's channel engagement, an aggregate, is a second statement in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Select, bindparam, literal_column, select

from tidings.models import Channel, Device, Preferences, User
from tidings.store.base import StoreBase
from tidings.store.ledger import LedgerEntry, _entry
from tidings.store.personal import CHANNEL_ENGAGEMENT, channel_counts
from tidings.store.tables import DeviceRow, LedgerRow, PreferencesRow, UserRow
from tidings.store.users import _device, _preferences, _user

# Prefixes of the other tables' columns in the one row (or one row per device) read.
_LEDGER, _PREFS, _DEVICE = "ledger_", "prefs_", "device_"


@dataclass
class RecipientState:
    user: User | None  # None: the user was deleted while the notification waited
    preferences: Preferences | None = None  # asked for: stored ones or the defaults
    devices: list[Device] = field(default_factory=list)  # asked for
    ledger: LedgerEntry | None = None  # asked for: this send's entry, if it was made before
    # Asked for: per channel, the user's sends since then and how many of them were engaged
    # with (`PersonalMixin.channel_engagement`).
    channel_engagement: dict[Channel, tuple[int, int]] | None = None


def _build(preferences: bool, devices: bool, ledger: bool) -> Select[Any]:
    """One statement for what is asked: a row that exists whether or not the user and the
    ledger entry do, the user, the entry and the preferences joined to it (NULL columns when
    absent), and one row per device."""
    users = cast(Any, UserRow.__table__)
    one = select(literal_column("1").label("one")).subquery("one")
    source = one.outerjoin(users, users.c.id == bindparam("user_id"))
    columns = list(users.c)
    ledger_t, prefs_t, devices_t = (
        cast(Any, t.__table__) for t in (LedgerRow, PreferencesRow, DeviceRow)
    )
    if ledger:
        source = source.outerjoin(ledger_t, ledger_t.c.key == bindparam("key"))
        columns += _labelled(ledger_t, _LEDGER)
    if preferences:
        source = source.outerjoin(prefs_t, prefs_t.c.user_id == users.c.id)
        columns += _labelled(prefs_t, _PREFS)
    if devices:
        source = source.outerjoin(devices_t, devices_t.c.user_id == users.c.id)
        columns += _labelled(devices_t, _DEVICE)
    stmt = select(*columns).select_from(source)
    if devices:
        order = (devices_t.c.created_at, devices_t.c.platform, devices_t.c.token_sha256)
        stmt = stmt.order_by(*order)
    return stmt


def _labelled(table: Any, prefix: str) -> list[Any]:
    return [c.label(prefix + c.name) for c in table.c]


class SendingMixin(StoreBase):
    async def recipient_state(
        self,
        user_id: str,
        *,
        preferences: bool = False,
        devices: bool = False,
        ledger_key: str | None = None,
        engagement_since: datetime | None = None,
    ) -> RecipientState:
        """The user and, as asked, their preferences, their devices, one ledger entry and their
        channel engagement since `engagement_since`, from one consistent snapshot: one
        statement, and a second for the engagement."""
        shape = (preferences, devices, ledger_key is not None)
        stmt = self._statement(("recipient_state", shape), lambda: _build(*shape))
        # Without the engagement it is one statement: no BEGIN needed for one snapshot.
        read = self._read_one if engagement_since is None else self._read_conn
        async with read() as conn:
            rows = (await conn.execute(stmt, {"user_id": user_id, "key": ledger_key})).all()
            state = _state(rows, user_id, preferences=preferences, devices=devices)
            if state.user is not None and engagement_since is not None:
                params = {"user_id": user_id, "since": engagement_since}
                state.channel_engagement = channel_counts(
                    await conn.execute(CHANNEL_ENGAGEMENT, params)
                )
            return state


def _state(
    rows: Sequence[Row[Any]], user_id: str, *, preferences: bool, devices: bool
) -> RecipientState:
    first = rows[0]._mapping
    ledger = None
    if first.get(_LEDGER + "key") is not None:
        ledger = _entry(cast(LedgerRow, _prefixed(first, _LEDGER)))
    if first["id"] is None:
        return RecipientState(user=None, ledger=ledger)
    state = RecipientState(user=_user(cast(UserRow, rows[0])), ledger=ledger)
    if preferences:
        stored = first[_PREFS + "user_id"] is not None  # else none stored: the defaults
        state.preferences = (
            _preferences(cast(PreferencesRow, _prefixed(first, _PREFS)))
            if stored
            else Preferences(user_id=user_id)
        )
    if devices:
        state.devices = [
            _device(cast(DeviceRow, _prefixed(row._mapping, _DEVICE)))
            for row in rows
            if row._mapping[_DEVICE + "token_sha256"] is not None
        ]
    return state


class _Columns:
    """A row's prefixed columns as attributes, for the converters that read ORM rows."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.__dict__.update(columns)


def _prefixed(mapping: Any, prefix: str) -> _Columns:
    cut = len(prefix)
    return _Columns({k[cut:]: v for k, v in mapping.items() if k.startswith(prefix)})
