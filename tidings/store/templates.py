"""Versioned templates. A version, once written, never changes: a notification pins the
version it started with and must find the same sources when it finally sends."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import bindparam, func, literal_column, select, true

from tidings.models import Template, TemplateDefinition, User
from tidings.store.base import StoreBase, utcnow
from tidings.store.sending import _labelled, _prefixed
from tidings.store.tables import TemplateRow, UserRow
from tidings.store.users import _user


def _template(row: TemplateRow) -> Template:
    return Template.model_validate(
        {
            "id": row.id,
            "version": row.version,
            "name": row.name,
            "category": row.category,
            "channels": row.channels,
            "default_priority": row.default_priority,
            "content": row.content,
            "locales": row.locales,
            "sample_data": row.sample_data,
            "fallback": row.fallback,
            "tracking": row.tracking,
            "created_at": row.created_at,
        }
    )


# Every notification's front door reads its template's latest version: Core selects built
# once (an ORM lookup built per call cost more CPU than the query).
_TEMPLATES = cast(Any, TemplateRow.__table__)
_BY_ID = select(*_TEMPLATES.c).where(_TEMPLATES.c.id == bindparam("template_id"))
_LATEST = _BY_ID.order_by(_TEMPLATES.c.version.desc()).limit(1)
_VERSION = _BY_ID.where(_TEMPLATES.c.version == bindparam("version"))
# The front door's user and latest template version as ONE statement: a row that exists whether
# or not either does, the user and the template joined to it (NULL columns when absent). Two
# statements needed a transaction (BEGIN) to read one snapshot, each statement a few hops to the
# driver's thread.
_TEMPLATE_PREFIX = "template_"


def _user_and_latest() -> Any:
    users = cast(Any, UserRow.__table__)
    one = select(literal_column("1").label("one")).subquery("one")
    latest = _LATEST.subquery("latest")
    source = one.outerjoin(users, users.c.id == bindparam("user_id")).outerjoin(latest, true())
    return select(*users.c, *_labelled(latest, _TEMPLATE_PREFIX)).select_from(source)


_USER_AND_LATEST = _user_and_latest()


def _definition_json(template: Template) -> dict[str, Any]:
    return template.model_dump(mode="json", exclude={"version", "created_at"})


class TemplatesMixin(StoreBase):
    async def add_template_version(self, definition: TemplateDefinition) -> Template:
        """Store `definition` as the next version of its template, or return the latest version
        unchanged when it is identical (registering the same thing twice is a no-op).

        Registrations of one template are serialised (a lock on PostgreSQL, the single writer on
        SQLite), so each sees the version the previous one wrote; the primary key (id, version)
        makes a duplicate version impossible even so."""
        wanted = definition.model_dump(mode="json")
        latest_stmt = (
            select(TemplateRow)
            .where(TemplateRow.id == definition.id)
            .order_by(TemplateRow.version.desc())
            .limit(1)
        )
        async with self._write() as session:
            await self._serialise(session, f"template:{definition.id}")
            latest_row = await session.scalar(latest_stmt)
            if latest_row is not None:
                latest = _template(latest_row)
                if _definition_json(latest) == wanted:
                    return latest
            row = TemplateRow(
                id=definition.id,
                version=1 if latest_row is None else latest_row.version + 1,
                name=wanted["name"],
                category=wanted["category"],
                channels=wanted["channels"],
                default_priority=wanted["default_priority"],
                content=wanted["content"],
                locales=wanted["locales"],
                sample_data=wanted["sample_data"],
                fallback=wanted["fallback"],
                tracking=wanted["tracking"],
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
        return _template(row)

    async def get_template(self, template_id: str, version: int | None = None) -> Template | None:
        """One version of a template; the latest when `version` is None. A version never changes
        once written, so pinned versions are served from memory after the first read."""
        if version is not None and (cached := self._versions.get((template_id, version))):
            return cached
        template = await self._read_template(template_id, version)
        if template is not None:
            self._versions.put((template.id, template.version), template)
        return template

    async def _read_template(self, template_id: str, version: int | None) -> Template | None:
        stmt = _LATEST if version is None else _VERSION
        async with self._read_one() as conn:
            params = {"template_id": template_id, "version": version}
            row = (await conn.execute(stmt, params)).one_or_none()
            return None if row is None else _template(cast(TemplateRow, row))

    async def user_and_template(
        self, user_id: str, template_id: str
    ) -> tuple[User | None, Template | None]:
        """The user and the template's latest version, in one read: what the front door checks
        for every notification."""
        params = {"user_id": user_id, "template_id": template_id}
        async with self._read_one() as conn:
            row = (await conn.execute(_USER_AND_LATEST, params)).one()
        columns = row._mapping
        template = None
        if columns[_TEMPLATE_PREFIX + "id"] is not None:
            template = _template(cast(TemplateRow, _prefixed(columns, _TEMPLATE_PREFIX)))
            self._versions.put((template.id, template.version), template)
        return None if columns["id"] is None else _user(cast(UserRow, row)), template

    async def list_templates(self) -> list[Template]:
        """The latest version of every template, by id."""
        latest = (
            select(TemplateRow.id, func.max(TemplateRow.version).label("version"))
            .group_by(TemplateRow.id)
            .subquery()
        )
        stmt = (
            select(TemplateRow)
            .join(
                latest,
                (TemplateRow.id == latest.c.id) & (TemplateRow.version == latest.c.version),
            )
            .order_by(TemplateRow.id)
        )
        async with self._read() as session:
            return [_template(row) for row in (await session.scalars(stmt)).all()]
