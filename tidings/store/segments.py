"""Saved segments, and their rules compiled to one SQL condition on `users`
(the language is `tidings.segments`). Engagement conditions are subqueries correlated with the
user: "at least once in N days" through the user's latest engagement (`user_engagement`),
counts above one and rates through notifications(user_id, created_at) and the notifications'
facts (their latest open, click and conversion: tidings.store.facts), so no engagement event
is read: a page of members stops at its limit instead of first grouping every event of the
window. A count of a rate reads the per-user per-day rollup `user_sent_days` instead
(`_Compiler._rate_count`)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.models import EngagementType, NotificationStatus
from tidings.segments import Condition, Group, Rule, Segment, SegmentDefinition
from tidings.store.base import StoreBase, check_limit, rowcount, utcnow
from tidings.store.facts import EPOCH
from tidings.store.portable import json_is, json_number, json_string
from tidings.store.tables import (
    NotificationRow,
    PreferencesRow,
    SegmentRow,
    UserEngagementRow,
    UserRow,
    UserSentDayRow,
)

_OPENED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]


def _compare(left: Any, op: str, value: Any) -> ColumnElement[bool]:
    match op:
        case "eq":
            return left == value  # type: ignore[no-any-return]
        case "ne":
            return left != value  # type: ignore[no-any-return]
        case "gt":
            return left > value  # type: ignore[no-any-return]
        case "gte":
            return left >= value  # type: ignore[no-any-return]
        case "lt":
            return left < value  # type: ignore[no-any-return]
        case "lte":
            return left <= value  # type: ignore[no-any-return]
    raise ValueError(f"operator {op!r}")


class _Compiler:
    def __init__(self, dialect: str, now: datetime, paged: bool) -> None:
        self.dialect = dialect
        self.now = now
        self.paged = paged  # compiled for a page of members (LIMIT) rather than a whole set

    def since(self, days: int) -> datetime:
        """Where a window of `days` days starts: at the UTC midnight `days` days before
        today's, so it holds the `days` whole days before today and today so far. Membership
        then changes only at midnight (a bulk send paging through a segment sees one audience
        all day), and a rate's window is whole days of the rollup (`_rate_count`)."""
        today = datetime.combine(self.now.astimezone(UTC).date(), time(), UTC)
        return today - timedelta(days=days)

    def rule(self, rule: Rule) -> ColumnElement[bool]:
        if isinstance(rule, Group):
            parts = [self.rule(r) for r in rule.rules]
            return and_(*parts) if rule.combine == "all" else or_(*parts)
        return self.condition(rule)

    def condition(self, c: Condition) -> ColumnElement[bool]:
        field, op, value = c.field, c.op, c.value
        if field in ("id", "locale", "timezone"):
            return self._string(getattr(UserRow, field), op, value)
        if field in ("email", "phone"):
            column = UserRow.email if field == "email" else UserRow.phone
            return column.is_not(None) if op == "exists" else column.is_(None)
        if field == "created_at":
            if op == "within_days":
                return UserRow.created_at >= self.since(value)
            at = datetime.fromisoformat(value)
            return UserRow.created_at < at if op == "before" else UserRow.created_at >= at
        if field.startswith("attributes."):
            return self._attribute(field.removeprefix("attributes."), op, value)
        if field.startswith("channels."):
            return self._channel(field.removeprefix("channels."), value)
        if field == "engagement.rate":
            return self._rate(op, value, c.days)
        return self._engaged(field.removeprefix("engagement."), op, value, c.days)

    @staticmethod
    def _string(column: Any, op: str, value: Any) -> ColumnElement[bool]:
        if op == "in":
            return column.in_(value)  # type: ignore[no-any-return]
        if op == "not_in":
            return column.not_in(value)  # type: ignore[no-any-return]
        if op == "prefix":
            return column.startswith(value, autoescape=True)  # type: ignore[no-any-return]
        return _compare(column, op, value)

    def _attribute_eq(self, key: str, value: Any) -> ColumnElement[bool]:
        d, column = self.dialect, UserRow.attributes
        if isinstance(value, bool):
            return json_is(column, key, "true" if value else "false", d)
        if isinstance(value, str):
            return and_(json_is(column, key, "string", d), column[key].as_string() == value)
        return and_(
            json_is(column, key, "number", d),
            func.coalesce(json_number(column, key, d) == value, false()),
        )

    def _attribute(self, key: str, op: str, value: Any) -> ColumnElement[bool]:
        d, column = self.dialect, UserRow.attributes
        if op in ("exists", "not_exists"):
            present = and_(
                json_is(column, key, "number", d)
                | json_is(column, key, "string", d)
                | json_is(column, key, "boolean", d)
            )
            return present if op == "exists" else not_(present)
        if op in ("eq", "ne"):
            match = self._attribute_eq(key, value)
            return match if op == "eq" else not_(match)
        if op in ("in", "not_in"):
            match = or_(*(self._attribute_eq(key, v) for v in value))
            return match if op == "in" else not_(match)
        if op == "prefix":
            return and_(
                json_is(column, key, "string", d),
                func.coalesce(
                    json_string(column, key, d).startswith(value, autoescape=True), false()
                ),
            )
        return and_(
            json_is(column, key, "number", d),
            func.coalesce(_compare(json_number(column, key, d), op, value), false()),
        )

    def _channel(self, channel: str, enabled: bool) -> ColumnElement[bool]:
        """A channel is on unless the user's global switch for it is false."""
        switched_off = exists().where(
            PreferencesRow.user_id == UserRow.id,
            json_is(PreferencesRow.channels, channel, "false", self.dialect),
        )
        return not_(switched_off) if enabled else switched_off

    def _engaged_at_least(self, kind: str, n: int, days: int) -> ColumnElement[bool]:
        """Correlated with the user through notifications(user_id, ...), so a page stops at its
        limit and a narrow audience costs only its own rows. A notification had an event of
        the kind in the window exactly when its latest one (its facts: tidings.store.facts)
        falls in it, so no event is read."""
        if n <= 0:
            return true()
        since = self.since(days)
        if n == 1:
            # At least one notification with such an event in the window exactly when the
            # user's latest such event (one row per user, kept by a trigger) is in it.
            latest = {
                "opened": UserEngagementRow.last_opened_at,
                "clicked": UserEngagementRow.last_clicked_at,
                "converted": UserEngagementRow.last_converted_at,
            }[kind]
            if self.paged:
                return exists().where(UserEngagementRow.user_id == UserRow.id, latest >= since)
            # A whole set: one pass over user_engagement, probing users by key. As a correlated
            # EXISTS, SQLite walked every user and probed user_engagement's key, then its table,
            # for each (200-310 ms at 100,000 users against 92 ms this way).
            return UserRow.id.in_(select(UserEngagementRow.user_id).where(latest >= since))
        last = {
            "opened": NotificationRow.last_opened_at,
            "clicked": NotificationRow.last_clicked_at,
            "converted": NotificationRow.last_converted_at,
        }[kind]
        theirs = [NotificationRow.user_id == UserRow.id, last >= since]
        engaged = select(func.count()).select_from(NotificationRow).where(*theirs)
        return engaged.scalar_subquery() >= n

    def _engaged(self, kind: str, op: str, n: int, days: int) -> ColumnElement[bool]:
        """Counts are whole numbers, so every comparison is "at least" or its negation."""
        at_least = self._engaged_at_least
        match op:
            case "gte":
                return at_least(kind, n, days)
            case "gt":
                return at_least(kind, n + 1, days)
            case "lt":
                return not_(at_least(kind, n, days)) if n > 0 else false()
            case "lte":
                return not_(at_least(kind, n + 1, days))
        # eq
        return and_(at_least(kind, n, days), not_(at_least(kind, n + 1, days)))

    def _rate(self, op: str, value: float, days: int) -> ColumnElement[bool]:
        """The user's share of sent notifications (created in the window) opened; a user sent
        nothing has no share and matches no comparison. Opened means an open or click at any
        time (the facts' `last_opened_at`). For a page, correlated with the user over the
        notifications (it stops at the limit); for a count, from the per-day rollup
        (`_rate_count`)."""
        since = self.since(days)
        if not self.paged:
            return self._rate_count((since.date() - EPOCH).days, op, value)
        n = NotificationRow
        opened = _share(func.sum(case((n.last_opened_at.is_not(None), 1), else_=0)), func.count())
        window = [n.created_at >= since, n.status == NotificationStatus.SENT.value]
        exact = select(opened).where(n.user_id == UserRow.id, *window).scalar_subquery()
        return func.coalesce(_compare(exact, op, value), false())

    def _rate_count(self, day: int, op: str, value: float) -> ColumnElement[bool]:
        """The rate over every user from `user_sent_days` (one row per user and UTC day,
        kept by triggers: migration 0019), from `day` (the window starts at a UTC midnight,
        so the rollup holds it exactly).

        SQLite: per user, one seek of the rollup's key (a scan of the users and a correlated
        sum: no grouping, no list of the matching users to build and probe).

        PostgreSQL: the rollup grouped per user in its key's order (an index-only scan of the
        key, which includes the counts), merge-joined with the users. The planner settings
        that keep that shape are `segment_count`'s (`_sorted_groups`)."""
        r = UserSentDayRow
        share = _share(func.sum(r.opened), func.sum(r.sent))
        if self.dialect == "postgresql":
            whole = select(r.user_id).where(r.day >= day).group_by(r.user_id)
            return UserRow.id.in_(whole.having(_compare(share, op, value)))
        rollup = select(share).where(r.user_id == UserRow.id, r.day >= day).scalar_subquery()
        return func.coalesce(_compare(rollup, op, value), false())


def _has_rate(rule: Rule) -> bool:
    if isinstance(rule, Group):
        return any(_has_rate(r) for r in rule.rules)
    return rule.field == "engagement.rate"


def _share(opened: Any, sent: Any) -> Any:
    """opened / sent as a float, NULL for nothing sent: the same division on both backends and
    in every form of the rule, so a count and its pages agree to the last bit. Both sides are
    cast: given an integer divisor, SQLAlchemy casts it to NUMERIC, which PostgreSQL then turns
    back into a double for every row."""
    return cast(opened, Float) / cast(func.nullif(sent, 0), Float)


def _segment(row: SegmentRow) -> Segment:
    return Segment(name=row.name, rules=row.rules, created_at=row.created_at)


class SegmentsMixin(StoreBase):
    def segment_condition(
        self, rule: Rule, now: datetime | None = None, *, paged: bool = False
    ) -> ColumnElement[bool]:
        """The rule as a condition on `users` (for this store's backend); `paged` when the
        query takes a page of users in id order."""
        return _Compiler(self.engine.dialect.name, now or utcnow(), paged).rule(rule)

    async def _sorted_groups(self, session: AsyncSession) -> None:
        """A rate count on PostgreSQL (`_Compiler._rate_count`) groups the rollup in its key's
        order and merge-joins it with the users: 125-150 ms at the bench's scale (EXPLAIN
        ANALYZE, custom and generic plans alike). The planner picks that today by itself;
        these settings keep it there: an earlier form of the count, with a partial first day
        joined in, made it hash the 740,000 rollup rows (550-630 ms), run the join once in
        each parallel worker, or switch to a slower generic plan from asyncpg's sixth run of
        the prepared statement."""
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        await session.execute(text("SET LOCAL jit = off"))
        await session.execute(text("SET LOCAL enable_hashagg = off"))
        await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))

    async def _no_jit(self, session: AsyncSession) -> None:
        """PostgreSQL's JIT costs seconds of compiling on these grouped subqueries, whose work
        takes milliseconds (see tidings.store.analytics)."""
        if self.engine.dialect.name == "postgresql":
            await session.execute(text("SET LOCAL jit = off"))

    async def create_segment(self, definition: SegmentDefinition) -> tuple[Segment, bool]:
        """Save the segment; (segment, False) when one of that name exists already (then the
        stored one is returned unchanged, whatever its rules)."""
        row = SegmentRow(name=definition.name, rules=definition.rules, created_at=utcnow())
        try:
            async with self._write() as session:
                session.add(row)
            return _segment(row), True
        except IntegrityError:
            existing = await self.get_segment(definition.name)
            if existing is None:
                raise
            return existing, False

    async def get_segment(self, name: str) -> Segment | None:
        async with self._read() as session:
            row = await session.get(SegmentRow, name)
            return None if row is None else _segment(row)

    async def list_segments(self) -> list[Segment]:
        async with self._read() as session:
            rows = (await session.scalars(select(SegmentRow).order_by(SegmentRow.name))).all()
            return [_segment(r) for r in rows]

    async def delete_segment(self, name: str) -> bool:
        async with self._write() as session:
            return (
                rowcount(await session.execute(delete(SegmentRow).where(SegmentRow.name == name)))
                > 0
            )

    async def _rule_of(self, name: str) -> Rule:
        segment = await self.get_segment(name)
        if segment is None:
            raise LookupError(f"segment {name} not found")
        return segment.rule()

    async def segment_users(
        self, name: str, now: datetime | None = None, *, paged: bool = False
    ) -> Any:
        """`SELECT users.id WHERE <rules>` for use inside another query (analytics)."""
        rule = await self._rule_of(name)
        return select(UserRow.id).where(self.segment_condition(rule, now, paged=paged))

    async def segment_count(self, name: str, *, now: datetime | None = None) -> int:
        rule = await self._rule_of(name)
        users = select(UserRow.id).where(self.segment_condition(rule, now))
        async with self._read() as session:
            if self.engine.dialect.name == "postgresql" and _has_rate(rule):
                await self._sorted_groups(session)
            return int(
                await session.scalar(select(func.count()).select_from(users.subquery())) or 0
            )

    async def segment_page(
        self, name: str, after: str | None, limit: int, *, now: datetime | None = None
    ) -> list[str]:
        """Up to `limit` of the segment's user ids in id order, after `after` (keyset
        pagination: each page is one index range, however deep; the next page is after the
        last id, and a page shorter than `limit` is the last). The rules are evaluated now, at
        each call. Raises LookupError for an unknown name. This is what a bulk send to a
        segment pages through."""
        check_limit(limit)
        users = await self.segment_users(name, now, paged=True)
        if after is not None:
            users = users.where(UserRow.id > after)
        users = users.order_by(UserRow.id).limit(limit)
        async with self._read() as session:
            await self._no_jit(session)
            if self.engine.dialect.name == "postgresql":
                # A page is a walk of the users' key from `after`, stopping at `limit` members.
                # The planner cannot estimate a rule over JSON (it guesses one member), so it
                # chose a parallel scan of every user and a sort (60-80 ms), or a nested loop
                # over all the opt-outs per user (350-740 ms), where the walk, probing each
                # user's preferences by key, takes 2-12 ms (EXPLAIN ANALYZE at 100,000 users).
                # And in this process: a parallel walk spent ~55 ms starting its worker for
                # 1-2 ms of reading.
                await session.execute(text("SET LOCAL enable_seqscan = off"))
                await session.execute(text("SET LOCAL enable_sort = off"))
                await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            return list((await session.scalars(users)).all())
