"""API keys: created with their digest, listed without it, revoked by id."""

from __future__ import annotations

from sqlalchemy import select, update

from tidings.api_keys import ApiKey, NewKey, Scope
from tidings.store.base import StoreBase, rowcount, utcnow
from tidings.store.tables import ApiKeyRow


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=[Scope(s) for s in row.scopes],
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class ApiKeysMixin(StoreBase):
    async def add_api_key(self, new: NewKey, name: str, scopes: list[Scope]) -> ApiKey:
        row = ApiKeyRow(
            id=new.id,
            name=name,
            scopes=[s.value for s in scopes],
            digest=new.digest,
            created_at=utcnow(),
            revoked_at=None,
        )
        async with self._write() as session:
            session.add(row)
        return _api_key(row)

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._read() as session:
            rows = await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [_api_key(r) for r in rows]

    async def api_key_with_digest(self, key_id: str) -> tuple[ApiKey, str] | None:
        async with self._read() as session:
            row = await session.get(ApiKeyRow, key_id)
            return None if row is None else (_api_key(row), row.digest)

    async def revoke_api_key(self, key_id: str) -> bool:
        """True if the key existed and was live; revoking twice changes nothing."""
        stmt = (
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        async with self._write() as session:
            return rowcount(await session.execute(stmt)) == 1
