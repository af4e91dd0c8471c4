"""Persistence for Tidings: SQLAlchemy 2 (async) over SQLite or PostgreSQL, with the Alembic
migrations in `migrations/` applied when the store opens."""

from tidings.store.repository import LedgerEntry, Store

__all__ = ["LedgerEntry", "Store"]
