"""Idempotency keys: the first request to use a key claims it, atomically, with its fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tidings.store.base import StoreBase, rowcount
from tidings.store.tables import IdempotencyKeyRow


class IdempotencyMixin(StoreBase):
    async def claim_idempotency_key(self, key: str, fingerprint: str) -> str | None:
        """Record that `key` belongs to the request with `fingerprint`. Returns None if this call
        claimed it, else the fingerprint it was claimed with (nothing is written then)."""
        stmt = (
            self._insert(IdempotencyKeyRow)
            .values(key=key, fingerprint=fingerprint, created_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        async with self._write() as session:
            if rowcount(await session.execute(stmt)) == 1:
                return None
            existing = await session.scalar(
                select(IdempotencyKeyRow.fingerprint).where(IdempotencyKeyRow.key == key)
            )
            assert existing is not None  # the conflicting row is visible in this transaction
            return existing

    async def idempotency_fingerprints(self, keys: list[str]) -> dict[str, str]:
        """The fingerprints of those of `keys` already claimed."""
        if not keys:
            return {}
        async with self._read() as session:
            rows = await session.execute(
                select(IdempotencyKeyRow.key, IdempotencyKeyRow.fingerprint).where(
                    IdempotencyKeyRow.key.in_(keys)
                )
            )
            return {key: fingerprint for key, fingerprint in rows}
