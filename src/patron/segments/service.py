"""Segments: rule-based groups of members, evaluated set-wise in the database.

A segment is a list of conditions joined by `all` (AND) or `any` (OR). A refresh compiles them to
one SELECT of member ids and brings `segment_members` in line with it in a few statements; nothing
walks the members in Python, so a refresh costs a handful of scans whatever their number.

How a condition becomes SQL:

* Each aggregate the conditions use (net spend, purchase count, points earned, last purchase,
  purchases in some categories), over its window, is one grouped subquery LEFT JOINed to
  `members`. A member without a row has an aggregate of 0, so `visits lt 2` includes those who
  never came, and an OR of conditions stays a join (PostgreSQL cannot turn `x OR id IN (...)`
  into a join, and falls back to rescanning the subquery per member once it outgrows work_mem).
* Windows are the `window_days` days that end at the refresh's `as_of`; nothing after `as_of`
  counts, and members enrolled after it are not members yet.
* "Days since" compares the instant with `as_of` minus whole days of 24 hours; a member who
  never visited has been away for ever (matches `gte` and `gt` on days_since_last_visit only).
* Member fields are plain columns; birthday_month goes through `extract`, which SQLAlchemy
  renders as EXTRACT on PostgreSQL and strftime on SQLite; attributes through the JSON column.

Membership is what the last refresh computed: editing a segment changes nothing until the next
run of `refresh-segments`. Erased members are never in a segment.
"""

from __future__ import annotations

import base64
import binascii
import operator
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast, get_args

from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    FromClause,
    MetaData,
    Select,
    SQLColumnExpression,
    String,
    Subquery,
    Table,
    Uuid,
    and_,
    delete,
    except_,
    exists,
    extract,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.db import UTCDateTime
from patron.errors import NotFound, SegmentExists, SegmentInUse, SegmentProtected, ValidationFailed
from patron.kit import cache, clock
from patron.kit.money import from_minor, parse_decimal, to_minor
from patron.kit.pagination import page
from patron.ledger.models import LedgerEntry
from patron.members.models import Member
from patron.members.schemas import Channel
from patron.program import service as program_service
from patron.rewards.models import Reward
from patron.rules import service as rules_service
from patron.rules.models import EarningRule
from patron.segments.models import Segment, SegmentMember, SegmentSize
from patron.segments.schemas import ConditionIn, ConditionOut, SegmentIn, SegmentOut, SegmentPatch
from patron.tiers.models import Tier
from patron.transactions.models import Transaction, TransactionLine

# --- What a condition may say -------------------------------------------------------------------

ALL_OPS = frozenset({"gte", "gt", "lte", "lt", "eq", "in"})
SET_OPS = frozenset({"eq", "in"})
CHANNELS: tuple[str, ...] = get_args(Channel)
ATTRIBUTE = "attribute."
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,60}$")  # as members' attribute keys
MAX_IN = 100
MAX_COUNT = 1_000_000_000
MAX_DAYS = 36_500
MAX_MINOR = 10**15


_AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class _Spec:
    kind: str  # money | count | days | month | text | tier | channel
    ops: frozenset[str]
    windowed: bool = False


FIELDS: dict[str, _Spec] = {
    "spend": _Spec("money", ALL_OPS, windowed=True),
    "visits": _Spec("count", ALL_OPS, windowed=True),
    "points_earned": _Spec("count", ALL_OPS, windowed=True),
    "days_since_last_visit": _Spec("days", ALL_OPS),
    "days_since_enrolled": _Spec("days", ALL_OPS),
    # Ordered by the ladder: `gte silver` is silver and every tier above it.
    "tier": _Spec("tier", ALL_OPS),
    # Bought in the category (within the window): eq one category, in any of several.
    "category": _Spec("text", SET_OPS, windowed=True),
    "birthday_month": _Spec("month", ALL_OPS),
    "channel": _Spec("channel", SET_OPS),  # the channel the member enrolled through
}
_ATTRIBUTE_SPEC = _Spec("text", SET_OPS)


def _spec(field: str) -> _Spec | None:
    if field.startswith(ATTRIBUTE):
        return _ATTRIBUTE_SPEC if _ATTRIBUTE_NAME.match(field.removeprefix(ATTRIBUTE)) else None
    return FIELDS.get(field)


def _tier_codes(session: Session) -> list[str]:
    """The ladder's codes, lowest first."""
    return list(session.scalars(select(Tier.code).order_by(Tier.position)))


def _value(spec: _Spec, field: str, raw: Any, currency: str, tiers: list[str]) -> Any:
    """One value as it is stored, or ValueError with what is wrong with it."""
    if spec.kind == "money":
        if not isinstance(raw, str):
            raise ValueError(f'{field} takes a decimal string such as "50000.00"')
        amount: Decimal = parse_decimal(raw.strip())
        if amount < 0:
            raise ValueError(f"{field} cannot be negative")
        minor = to_minor(amount, currency)
        if minor > MAX_MINOR:
            raise ValueError(f"{field} is too large")
        return minor
    if spec.kind in ("count", "days", "month"):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"{field} takes an integer")
        low, high = {"count": (0, MAX_COUNT), "days": (0, MAX_DAYS), "month": (1, 12)}[spec.kind]
        if not low <= raw <= high:
            raise ValueError(f"{field} takes a number from {low} to {high}")
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{field} takes a non-empty string")
    value = raw.strip()
    if len(value) > 500:
        raise ValueError(f"{field} takes at most 500 characters")
    if spec.kind == "tier" and value not in tiers:
        raise ValueError(f"no tier {value!r}; the tiers are {', '.join(tiers)}")
    if spec.kind == "channel" and value not in CHANNELS:
        raise ValueError(f"channel is one of {', '.join(CHANNELS)}")
    return value


def _normalise(session: Session, conditions: Sequence[ConditionIn]) -> list[dict[str, Any]]:
    """The conditions as stored, after checking each against its field; every problem at once."""
    currency = program_service.get(session).currency
    tiers = _tier_codes(session)
    errors: list[dict[str, str]] = []
    out: list[dict[str, Any]] = []

    def check(raw: Any, where: str, spec: _Spec, field: str) -> Any:
        try:
            return _value(spec, field, raw, currency, tiers)
        except ValueError as exc:
            errors.append({"field": where, "message": str(exc)})
            return None

    for i, c in enumerate(conditions):
        where = f"conditions.{i}"
        spec = _spec(c.field)
        if spec is None:
            errors.append({"field": f"{where}.field", "message": f"one of {', '.join(FIELDS)} or attribute.NAME"})
            continue
        if c.op not in spec.ops:
            errors.append({"field": f"{where}.op", "message": f"{c.field} takes {' or '.join(sorted(spec.ops))}"})
            continue
        if c.window_days is not None and not spec.windowed:
            errors.append({"field": f"{where}.window_days", "message": f"window_days does not apply to {c.field}"})
        value: Any
        if c.op == "in":
            if not isinstance(c.value, list) or not c.value:
                errors.append({"field": f"{where}.value", "message": "in takes a non-empty list"})
                continue
            if len(c.value) > MAX_IN:
                errors.append({"field": f"{where}.value", "message": f"in takes at most {MAX_IN} values"})
                continue
            value = list(dict.fromkeys(check(v, f"{where}.value.{j}", spec, c.field) for j, v in enumerate(c.value)))
        elif isinstance(c.value, list):
            errors.append({"field": f"{where}.value", "message": f"{c.op} takes one value; in takes a list"})
            continue
        else:
            value = check(c.value, f"{where}.value", spec, c.field)
        item: dict[str, Any] = {"field": c.field, "op": c.op, "value": value}
        if c.window_days is not None:
            item["window_days"] = c.window_days
        out.append(item)
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(detail, errors=errors)
    return out


# --- From conditions to SQL -----------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
    "eq": operator.eq,
}


def _compare(expr: SQLColumnExpression[Any], op: str, value: Any) -> ColumnElement[bool]:
    if op == "in":
        return expr.in_(value)
    return cast(ColumnElement[bool], _COMPARE[op](expr, value))


def _days_since(column: SQLColumnExpression[Any], op: str, days: Any, as_of: datetime) -> ColumnElement[bool]:
    """`whole days from column to as_of <op> days`, as comparisons of the instant itself, so an
    index on the column serves and no database needs date arithmetic."""
    if op == "in":
        return or_(*(_days_since(column, "eq", d, as_of) for d in days))

    def back(n: int) -> datetime:
        return as_of - timedelta(days=n)

    if op == "gte":
        return column <= back(days)
    if op == "gt":
        return column <= back(days + 1)
    if op == "lte":
        return column > back(days + 1)
    if op == "lt":
        return column > back(days)
    return and_(column > back(days + 1), column <= back(days))


def _within(column: Any, window_days: int | None, as_of: datetime) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [column <= as_of]
    if window_days:
        conds.append(column >= as_of - timedelta(days=window_days))
    return conds


class _Compiler:
    """Turns stored conditions into one boolean expression over `members` and the aggregates it
    joins, each distinct (aggregate, window) joined once."""

    def __init__(self, as_of: datetime, ladder: list[str]) -> None:
        self.as_of = as_of
        self.ladder = ladder
        self.source: FromClause = Member.__table__
        self.joined: dict[tuple[Any, ...], Subquery] = {}

    def _aggregate(self, key: tuple[Any, ...], make: Callable[[], _AnySelect]) -> Subquery:
        if key not in self.joined:
            sub = make().subquery(f"agg_{len(self.joined)}")
            self.joined[key] = sub
            self.source = self.source.outerjoin(sub, sub.c.member_id == Member.id)
        return self.joined[key]

    def _purchases(self, window_days: int | None) -> Subquery:
        """Net spend, visits and the last visit within one window, in one pass over its purchases:
        vip and regular both ask for spend and visits over 365 days, and share it."""

        def make() -> _AnySelect:
            t = Transaction
            return (
                select(
                    t.member_id.label("member_id"),
                    func.sum(t.amount_due_minor - t.returned_net_minor).label("spend"),
                    func.count().label("visits"),
                    func.max(t.occurred_at).label("last_visit"),
                )
                .where(*_within(t.occurred_at, window_days, self.as_of))
                .group_by(t.member_id)
            )

        return self._aggregate(("purchases", window_days), make)

    def condition(self, c: dict[str, Any]) -> ColumnElement[bool]:
        field, op, value, window = c["field"], c["op"], c["value"], c.get("window_days")
        if field in ("spend", "visits"):
            return _compare(func.coalesce(self._purchases(window).c[field], 0), op, value)
        if field == "points_earned":
            # Points purchases earned, net of what returns reversed: the tier ladder's measure.
            def points() -> _AnySelect:
                e = LedgerEntry
                return (
                    select(e.member_id.label("member_id"), func.sum(e.points).label("v"))
                    .where(e.kind.in_(("earn", "reverse")), *_within(e.created_at, window, self.as_of))
                    .group_by(e.member_id)
                )

            sub = self._aggregate(("points_earned", window), points)
            return _compare(func.coalesce(sub.c.v, 0), op, value)
        if field == "days_since_last_visit":
            last = self._purchases(None).c.last_visit
            recent = _days_since(last, op, value, self.as_of)
            return or_(last.is_(None), recent) if op in ("gte", "gt") else recent
        if field == "days_since_enrolled":
            return _days_since(Member.enrolled_at, op, value, self.as_of)
        if field == "category":
            categories = tuple(sorted(value)) if op == "in" else (value,)

            def bought() -> _AnySelect:
                t, line = Transaction, TransactionLine
                return (
                    select(t.member_id.label("member_id"), func.count().label("v"))
                    .join(line, line.transaction_id == t.id)
                    .where(line.category.in_(categories), *_within(t.occurred_at, window, self.as_of))
                    .group_by(t.member_id)
                )

            sub = self._aggregate(("category", window, categories), bought)
            return sub.c.v.is_not(None)
        if field == "tier":
            return self._tier(op, value)
        if field == "birthday_month":
            return _compare(extract("month", Member.birth_date), op, value)
        if field == "channel":
            return _compare(Member.channel, op, value)
        if field.startswith(ATTRIBUTE):
            return _compare(Member.attributes[field.removeprefix(ATTRIBUTE)].as_string(), op, value)
        raise ValueError(f"unknown segment field {field!r}")

    def _tier(self, op: str, value: Any) -> ColumnElement[bool]:
        if op in ("eq", "in"):
            return _compare(Member.tier_code, op, value)
        if value not in self.ladder:  # the ladder changed since the segment was written
            return false()
        at = self.ladder.index(value)
        codes = {
            "gte": self.ladder[at:],
            "gt": self.ladder[at + 1 :],
            "lte": self.ladder[: at + 1],
            "lt": self.ladder[:at],
        }[op]
        return Member.tier_code.in_(codes) if codes else false()


def match_statement(session: Session, match: str, conditions: list[dict[str, Any]], as_of: datetime) -> Select[Any]:
    """SELECT the ids of the members who meet the conditions as of `as_of`."""
    compiler = _Compiler(as_of, _tier_codes(session))
    parts = [compiler.condition(c) for c in conditions]
    if match == "all":
        combined = and_(true(), *parts)
    else:
        combined = or_(false(), *parts)
    return (
        select(Member.id)
        .select_from(compiler.source)
        .where(Member.status != "erased", Member.enrolled_at <= as_of, combined)
    )


# --- Refresh --------------------------------------------------------------------------------------

# The matching ids of the segment being refreshed: the match runs once, and the removal of those
# who left and the insertion of those who joined are both compared with it. Temporary: private to
# the connection, not written to the WAL on PostgreSQL, and dropped before the transaction ends.
_scratch = Table("segment_scratch", MetaData(), Column("member_id", Uuid, primary_key=True), prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Refreshed:
    code: str
    size: int
    joined: int
    left: int


def _rowcount(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount)


def refresh(session: Session, code: str, as_of: datetime) -> Refreshed | None:
    """Recompute one segment's membership as of `as_of` and record its size; None if it is gone.

    The segment's row is locked first, so two refreshes of it (or a refresh and an edit) queue
    rather than interleave."""
    segment = session.get(Segment, code, with_for_update=True, populate_existing=True)
    if segment is None:
        return None
    matching = match_statement(session, segment.match, list(segment.conditions or []), as_of)
    bind = session.connection()
    if bind.dialect.name == "postgresql":
        # Measured over a million members: compiling these one-off scans with JIT costs more than
        # it saves (13.2 s for the three shipped segments with it, 9.6 s without).
        session.execute(text("SET LOCAL jit = off"))
    _scratch.create(bind, checkfirst=True)
    session.execute(delete(_scratch))
    session.execute(insert(_scratch).from_select(["member_id"], matching))
    if bind.dialect.name == "postgresql":
        session.execute(text("ANALYZE segment_scratch"))  # a fresh table has no statistics to plan with
    size = int(session.scalar(select(func.count()).select_from(_scratch)) or 0)
    mine = SegmentMember.segment_code == code
    left = _rowcount(
        session.execute(
            delete(SegmentMember).where(mine, ~exists().where(_scratch.c.member_id == SegmentMember.member_id)),
            execution_options={"synchronize_session": False},
        )
    )
    # EXCEPT, not NOT EXISTS: each side is read once. Against a segment_members that the planner
    # believes empty (a first refresh), PostgreSQL picks a nested loop that rescans the table this
    # very statement is filling, once per row: a minute for 100,000 members.
    new_ids = except_(select(_scratch.c.member_id), select(SegmentMember.member_id).where(mine)).subquery()
    newcomers = select(literal(code, String()), new_ids.c.member_id, literal(as_of, UTCDateTime()))
    joined = _rowcount(
        session.execute(
            insert(SegmentMember).from_select(["segment_code", "member_id", "since"], newcomers),
            execution_options={"preserve_rowcount": True},  # SQLAlchemy keeps it for UPDATE/DELETE only
        )
    )
    _scratch.drop(bind)
    segment.size = size
    segment.refreshed_at = as_of
    session.add(SegmentSize(segment_code=code, measured_at=as_of, size=size, joined=joined, left=left))
    return Refreshed(code, size, joined, left)


def codes(session: Session) -> list[str]:
    return list(session.scalars(select(Segment.code).order_by(Segment.code)))


# --- Membership as the rest of the system sees it -----------------------------------------------


def codes_for(session: Session, member_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Each member's segments (sorted codes), for a whole list of members in one query."""
    out: dict[uuid.UUID, list[str]] = {m: [] for m in member_ids}
    if member_ids:
        rows = session.execute(
            select(SegmentMember.member_id, SegmentMember.segment_code)
            .where(SegmentMember.member_id.in_(member_ids))
            .order_by(SegmentMember.segment_code)
        )
        for member_id, code in rows:
            out[member_id].append(code)
    return out


def member_segments(session: Session, member_id: uuid.UUID) -> frozenset[str]:
    return frozenset(session.scalars(select(SegmentMember.segment_code).where(SegmentMember.member_id == member_id)))


def rule_segments(session: Session) -> frozenset[str]:
    """The segments that active earning rules are restricted to (cached with the rules), so a
    purchase looks up the member's segments only when some rule asks."""

    def load() -> frozenset[str]:
        return frozenset(code for rule in rules_service.active_rules(session) for code in rule.conditions.segments)

    version = program_service.get(session).config_version
    return cache.versioned(session, "rule_segments", version, load)


# --- Managing segments ----------------------------------------------------------------------------


def get(session: Session, code: str, *, for_update: bool = False) -> Segment:
    segment = session.get(Segment, code, with_for_update=for_update, populate_existing=for_update)
    if segment is None:
        raise NotFound("No such segment")
    return segment


def create(session: Session, actor: Actor, data: SegmentIn) -> Segment:
    conditions = _normalise(session, data.conditions)
    if session.get(Segment, data.code) is not None:
        raise SegmentExists(f"A segment with code {data.code!r} already exists")
    now = clock.now()
    segment = Segment(
        code=data.code,
        name=data.name,
        description=data.description or None,
        match=data.match,
        conditions=conditions,
        system=False,
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # created concurrently under the same code
        raise SegmentExists(f"A segment with code {data.code!r} already exists") from exc
    audit.record(session, actor, "segment.create", "segment", segment.code, {"match": segment.match})
    return segment


def update(session: Session, actor: Actor, code: str, patch: SegmentPatch) -> Segment:
    segment = get(session, code, for_update=True)
    fields = patch.model_dump(exclude_unset=True)
    for name in ("name", "match"):
        if name in fields:
            if fields[name] is None:
                raise ValidationFailed(f"{name} cannot be empty", field=name)
            setattr(segment, name, fields[name])
    if "description" in fields:
        segment.description = patch.description or None
    if "conditions" in fields:
        if patch.conditions is None:
            raise ValidationFailed("a segment needs at least one condition", field="conditions")
        segment.conditions = _normalise(session, patch.conditions)
    segment.updated_at = clock.now()
    audit.record(session, actor, "segment.update", "segment", segment.code, {"fields": sorted(fields)})
    return segment


def delete_segment(session: Session, actor: Actor, code: str) -> None:
    """Delete a segment with its membership and size history. The shipped ones stay (edit them
    instead), and so does one that an earning rule or a reward is restricted to: deleting it
    would quietly stop the rule from ever matching, or nobody could claim the reward (rewards
    are deactivated, never deleted, so any reward counts)."""
    segment = get(session, code, for_update=True)
    if segment.system:
        raise SegmentProtected(f"{code!r} ships with the programme: edit its conditions instead of deleting it")
    users = [
        rule.name
        for rule in session.scalars(select(EarningRule).where(EarningRule.deleted_at.is_(None)))
        if code in ((rule.conditions or {}).get("segments") or ())
    ]
    if users:
        raise SegmentInUse(f"Earning rules are restricted to this segment: {', '.join(sorted(users))}")
    rewards = [reward.name for reward in session.scalars(select(Reward)) if code in (reward.segments or ())]
    if rewards:
        raise SegmentInUse(f"Rewards are restricted to this segment: {', '.join(sorted(rewards))}")
    session.execute(delete(SegmentMember).where(SegmentMember.segment_code == code))
    session.execute(delete(SegmentSize).where(SegmentSize.segment_code == code))
    session.delete(segment)
    audit.record(session, actor, "segment.delete", "segment", code)


def _encode(code: str) -> str:
    return base64.urlsafe_b64encode(code.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this API gave out", field="cursor") from exc


def listing(session: Session, *, limit: int, cursor: str | None) -> tuple[Sequence[Segment], str | None]:
    """Segments by code."""
    stmt = select(Segment).order_by(Segment.code)
    if cursor:
        stmt = stmt.where(Segment.code > _decode(cursor))
    rows = session.scalars(stmt.limit(limit + 1)).all()
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, _encode(rows[-1].code)
    return rows, None


def members_page(
    session: Session, code: str, *, limit: int, cursor: str | None
) -> tuple[Sequence[Member], str | None, int]:
    """One page of the segment's members (newest enrolment first), and how many there are."""
    get(session, code)
    joined = and_(SegmentMember.member_id == Member.id, SegmentMember.segment_code == code)
    live = Member.status != "erased"
    rows, next_cursor = page(
        session, select(Member).join(SegmentMember, joined).where(live), Member.id, limit=limit, cursor=cursor
    )
    total = session.scalar(select(func.count()).select_from(SegmentMember).join(Member, joined).where(live))
    return rows, next_cursor, int(total or 0)


def sizes_page(
    session: Session, code: str, *, limit: int, cursor: str | None
) -> tuple[Sequence[SegmentSize], str | None]:
    """The segment's size at each refresh, the latest first."""
    get(session, code)
    stmt = select(SegmentSize).where(SegmentSize.segment_code == code)
    return page(session, stmt, SegmentSize.id, limit=limit, cursor=cursor)


def _value_out(field: str, value: Any, currency: str) -> Any:
    if field != "spend":
        return value
    if isinstance(value, list):
        return [str(from_minor(v, currency)) for v in value]
    return str(from_minor(value, currency))


def to_out(session: Session, segment: Segment) -> SegmentOut:
    currency = program_service.get(session).currency
    return SegmentOut(
        code=segment.code,
        name=segment.name,
        description=segment.description,
        match=cast(Any, segment.match),
        conditions=[
            ConditionOut(
                field=c["field"],
                op=c["op"],
                value=_value_out(c["field"], c["value"], currency),
                window_days=c.get("window_days"),
            )
            for c in segment.conditions or []
        ],
        system=segment.system,
        size=segment.size,
        refreshed_at=segment.refreshed_at,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )
