"""Idempotency keys: the first request to use a key claims it, atomically, with its fingerprint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import bindparam, select

from tidings.store.base import IN_CHUNK, StoreBase, Upsert, rowcount
from tidings.store.tables import IdempotencyKeyRow


class IdempotencyMixin(StoreBase):
    async def claim_idempotency_key(self, key: str, fingerprint: str) -> str | None:
        """Record that `key` belongs to the request with `fingerprint`. Returns None if this call
        claimed it, else the fingerprint it was claimed with (nothing is written then)."""
        params = {"key": key, "fingerprint": fingerprint, "created_at": datetime.now(UTC)}
        while True:
            # The claim alone (every notification's front door makes it) is one statement,
            # without BEGIN on SQLite; only a key claimed before costs a read after it.
            async with self._write_one() as conn:
                if rowcount(await conn.execute(self._claim_insert(), params)) == 1:
                    return None
            async with self._read_one() as conn:
                existing = await conn.scalar(self._fingerprint_select(), {"key": key})
            if existing is not None:
                return cast(str, existing)
            # The claim was released between the two (a bulk's unclaimed keys): claim again.

    async def claim_idempotency_keys(self, claims: Mapping[str, str]) -> dict[str, str]:
        """`claim_idempotency_key` for a whole bulk, in one transaction: each key of `claims`
        (key -> fingerprint) not yet claimed is claimed. Returns the keys that were claimed
        before, with their fingerprints; the rest are now this call's."""
        keys = list(claims)
        now = datetime.now(UTC)
        claimed_before: dict[str, str] = {}
        async with self._write() as session:
            for start in range(0, len(keys), IN_CHUNK):
                chunk = keys[start : start + IN_CHUNK]
                rows = [{"key": k, "fingerprint": claims[k], "created_at": now} for k in chunk]
                stmt = (
                    self._insert(IdempotencyKeyRow)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(IdempotencyKeyRow.key)
                )
                mine = set((await session.scalars(stmt)).all())
                theirs = [k for k in chunk if k not in mine]
                if theirs:
                    existing = await session.execute(
                        select(IdempotencyKeyRow.key, IdempotencyKeyRow.fingerprint).where(
                            IdempotencyKeyRow.key.in_(theirs)
                        )
                    )
                    claimed_before.update((k, f) for k, f in existing)
        return claimed_before

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

    def _fingerprint_select(self) -> Any:
        def build() -> Any:
            table = cast(Any, IdempotencyKeyRow.__table__)
            return select(table.c.fingerprint).where(table.c.key == bindparam("key"))

        return self._statement("claim_fingerprint", build)

    def _claim_insert(self) -> Upsert:
        """Built once per store, values bound by name: every notification's front door runs
        it (see `NotificationsMixin._notification_upsert`)."""

        def build() -> Upsert:
            return self._insert(IdempotencyKeyRow).on_conflict_do_nothing(index_elements=["key"])

        return self._statement("claim", build)
