"""The Store: the one object the rest of Tidings uses to reach the database.

Build it once per process with `await Store.open(url)` (which also brings the schema up to date)
and share it; close it on shutdown. Its methods are grouped by subject in the modules beside this
one; each runs in a single transaction, so a failing write leaves nothing half-written.
"""

from __future__ import annotations

import logging
from typing import Any

from tidings.store.analytics import AnalyticsMixin
from tidings.store.api_keys import ApiKeysMixin
from tidings.store.broadcasts import BroadcastsMixin
from tidings.store.bulks import BulksMixin
from tidings.store.digests import DigestsMixin
from tidings.store.engine import create_engine, migrate
from tidings.store.experiments import ExperimentsMixin
from tidings.store.frequency import FrequencyMixin
from tidings.store.idempotency import IdempotencyMixin
from tidings.store.inbox import InboxMixin
from tidings.store.inbox_send import InboxSendMixin
from tidings.store.ledger import LedgerEntry, LedgerMixin
from tidings.store.notifications import NotificationsMixin
from tidings.store.personal import PersonalMixin
from tidings.store.receipts import ReceiptsMixin
from tidings.store.sending import SendingMixin
from tidings.store.templates import TemplatesMixin
from tidings.store.unsubscribe import UnsubscribeMixin
from tidings.store.users import ErasureMixin, UsersMixin

log = logging.getLogger(__name__)

__all__ = ["LedgerEntry", "Store"]


class Store(
    InboxSendMixin,
    UsersMixin,
    SendingMixin,
    TemplatesMixin,
    NotificationsMixin,
    LedgerMixin,
    InboxMixin,
    FrequencyMixin,
    ReceiptsMixin,
    IdempotencyMixin,
    ExperimentsMixin,
    ApiKeysMixin,
    AnalyticsMixin,
    BroadcastsMixin,
    BulksMixin,
    DigestsMixin,
    ErasureMixin,
    UnsubscribeMixin,
    PersonalMixin,
):
    @classmethod
    async def open(cls, url: str, *, connect_args: dict[str, Any] | None = None) -> Store:
        """Connect to `url` (sqlite+aiosqlite:///path or postgresql+asyncpg://...) and apply
        pending migrations. `connect_args` go to the driver's connect call, e.g. asyncpg's
        `server_settings`."""
        engine = create_engine(url, connect_args=connect_args)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        log.info("store open on %s", engine.url.render_as_string(hide_password=True))
        return cls(engine)

    async def close(self) -> None:
        await self._close_inbox_waker()
        await self.engine.dispose()
