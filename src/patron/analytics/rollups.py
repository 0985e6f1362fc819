"""The dashboard's rollups of closed days: filled on demand, checked for rows that arrived late.

A local day is closed SETTLE after its end. Its figures are final then for rows stamped with the
time they were written (ledger entries, members enrolled through the API), but a purchase may be
posted later by a till that was offline, and an import brings members with their own enrolment
dates. Every request therefore first looks at what was inserted into the three source tables since
its last look (`id >= checked`: the ids are UUIDv7, made at insertion, so this is a short range of
the primary key) and drops the rollup rows, from the earliest day such a row falls on, that were
computed before the row could have committed; they are filled again on demand. Each look reaches
SETTLE further back than the previous one, for rows whose id was made before it and that committed
after it. Rows whose ids are older than SETTLE when they commit (a transaction open for longer, a
server whose clock is that far behind) are not seen: deleting the rollup rows mends that.

Missing days are filled one statement per run of consecutive days (INSERT ... SELECT ... GROUP BY),
with zero rows for days without any activity, so a day is never summed twice. Two requests filling
the same day at once insert the same rows and the second one's are ignored.
"""

from __future__ import annotations

import time as wallclock
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Select, String, case, cast, delete, func, literal, or_, select, text, true, type_coerce
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from patron.analytics.models import EnrolmentDay, LedgerDay, PurchaseDay, RollupCheck
from patron.db import Base, Database, UTCDateTime
from patron.kit import clock
from patron.ledger.models import LedgerEntry
from patron.members.models import Member
from patron.program import service as program_service
from patron.transactions.models import Transaction

# How long a row may take to commit after it was stamped (its id and time are made before its
# transaction commits, and app servers' clocks may disagree a little): a day is closed this long
# after its end, and each check looks this far back before the previous one.
SETTLE = timedelta(minutes=10)
DAY = timedelta(days=1)
_MS = timedelta(milliseconds=1)
NEVER_BOUGHT = date(1, 1, 1)
WARM_DAYS = 400  # a year back from any day of the next month
POINT_FIGURES = ("issued", "redeemed", "expired", "reversed", "adjusted_down")


def midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def days(first: date, last: date) -> Iterator[date]:
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def last_closed_day(tz: ZoneInfo, settle: timedelta = SETTLE) -> date:
    return (clock.now() - settle).astimezone(tz).date() - DAY


def _wallclock() -> datetime:
    # Ids carry the writer's wall-clock time, not the programme clock: what is compared with ids
    # is measured the same way.
    return datetime.fromtimestamp(wallclock.time_ns() / 1e9, UTC)


# --- Local days in SQL ---------------------------------------------------------------------------


def _sqlite_local_day(value: str | None, zone: str) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


def local_day(session: Session, column: Any, zone: str) -> ColumnElement[Any]:
    """The calendar day in `zone` of a UTC timestamp, as a SQL expression."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone(zone, column), Date)
    # SQLite has no time zones: a Python function registered on this connection does the work.
    # Once per connection: SQLite refuses to (re)define a function while a statement is running.
    connection = session.connection().connection
    if "patron_local_day" not in connection.info:
        raw: Any = connection.driver_connection
        raw.create_function("patron_local_day", 2, _sqlite_local_day, deterministic=True)
        connection.info["patron_local_day"] = True
    return type_coerce(func.patron_local_day(column, zone), String)  # ISO text, as SQLite keeps dates


# --- What each rollup sums -----------------------------------------------------------------------


def ledger_sums() -> list[ColumnElement[Any]]:
    e = LedgerEntry
    credit = case((e.kind.in_(("earn", "bonus")), e.points), ((e.kind == "adjust") & (e.points > 0), e.points), else_=0)
    figures = [
        credit,
        case((e.kind.in_(("redeem", "restore")), -e.points), else_=0),
        case((e.kind == "expire", -e.points), else_=0),
        case((e.kind == "reverse", -e.points), else_=0),
        case(((e.kind == "adjust") & (e.points < 0), -e.points), else_=0),
    ]
    return [func.coalesce(func.sum(f), 0).label(name) for f, name in zip(figures, POINT_FIGURES, strict=True)]


def _ledger_rows(session: Session, zone: str, since: datetime, until: datetime) -> Select[Any]:
    day = local_day(session, LedgerEntry.created_at, zone).label("day")
    return (
        select(day, *ledger_sums()).where(LedgerEntry.created_at >= since, LedgerEntry.created_at < until).group_by(day)
    )


def _enrolment_rows(session: Session, zone: str, since: datetime, until: datetime) -> Select[Any]:
    day = local_day(session, Member.enrolled_at, zone).label("day")
    return (
        select(day, func.count().label("enrolled"))
        .where(Member.enrolled_at >= since, Member.enrolled_at < until)
        .group_by(day)
    )


def _purchase_rows(session: Session, zone: str, since: datetime, until: datetime) -> Select[Any]:
    """Per day of the range: the members who bought on it, counted by the day of their previous
    purchase. One pass over the range's purchases by member (the previous one is the row before,
    within the range), and for a member's first purchase in the range one probe of the
    `(member_id, occurred_at)` index for the last one before it. A member's second purchase on a
    day has that same day as its previous one and is left out."""
    t, earlier = Transaction, aliased(Transaction)
    before = (
        select(func.max(earlier.occurred_at))
        .where(earlier.member_id == t.member_id, earlier.occurred_at < since)
        .scalar_subquery()
    )
    # COALESCE evaluates the probe only where the window has no previous row.
    previous_at = func.coalesce(func.lag(t.occurred_at).over(partition_by=t.member_id, order_by=t.occurred_at), before)
    purchases = (
        select(
            local_day(session, t.occurred_at, zone).label("day"),
            local_day(session, previous_at, zone).label("previous"),
        )
        .where(t.occurred_at >= since, t.occurred_at < until, t.member_id.is_not(None))
        .subquery()
    )
    previous = func.coalesce(purchases.c.previous, literal(NEVER_BOUGHT, Date())).label("previous")
    return (
        select(purchases.c.day, previous, func.count().label("members"))
        .where(or_(purchases.c.previous.is_(None), purchases.c.previous < purchases.c.day))
        .group_by(purchases.c.day, previous)
    )


@dataclass(frozen=True)
class Source:
    name: str
    rollup: type[Base]
    columns: tuple[str, ...]  # the rollup's columns the rows fill, after zone and before computed_at
    zero: dict[str, Any]  # a day without activity
    id: Any
    time: Any
    rows: Callable[[Session, str, datetime, datetime], Select[Any]]


LEDGER = Source(
    "ledger",
    LedgerDay,
    ("day", *POINT_FIGURES),
    dict.fromkeys(POINT_FIGURES, 0),
    LedgerEntry.id,
    LedgerEntry.created_at,
    _ledger_rows,
)
ENROLMENTS = Source(
    "enrolments", EnrolmentDay, ("day", "enrolled"), {"enrolled": 0}, Member.id, Member.enrolled_at, _enrolment_rows
)
PURCHASES = Source(
    "purchases",
    PurchaseDay,
    ("day", "previous", "members"),
    {"previous": NEVER_BOUGHT, "members": 0},
    Transaction.id,
    Transaction.occurred_at,
    _purchase_rows,
)
SOURCES = (LEDGER, ENROLMENTS, PURCHASES)


# --- Checking and filling ------------------------------------------------------------------------


def _insert(session: Session, model: type[Base]) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


def _first_id_of(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of a moment's millisecond: every id made then or later sorts after it."""
    ms = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))


def time_of(key: uuid.UUID) -> datetime:
    return datetime.fromtimestamp((key.int >> 80) / 1000, UTC)


def check(session: Session, zone: str, source: Source, checked: uuid.UUID | None, settle: timedelta = SETTLE) -> None:
    """Drop the rollup rows that rows inserted since the last check (`checked`) may have missed.

    A row stamped at t is committed by t + settle, so a rollup row computed after that has it;
    one computed earlier is dropped if the row's day is one it covers."""
    table: Any = source.rollup
    now = _wallclock()
    if checked is None:
        session.execute(delete(table).where(table.zone == zone))  # rows of unknown age
    else:
        since = source.id >= checked
        newest = select(source.id).where(since).order_by(source.id.desc()).limit(1).scalar_subquery()
        earliest, last_id = session.execute(select(func.min(source.time), newest).where(since)).one()
        if earliest is not None and last_id is not None:
            session.execute(
                delete(table).where(
                    table.zone == zone,
                    table.day >= earliest.astimezone(ZoneInfo(zone)).date(),
                    table.computed_at < time_of(last_id) + settle + _MS,  # ids hold whole milliseconds
                )
            )
    # Moved on once a minute at most: a request that finds nothing new writes nothing.
    if checked is None or time_of(checked) < now - settle - timedelta(minutes=1):
        row = {"zone": zone, "source": source.name, "checked": _first_id_of(now - settle), "updated_at": now}
        stmt = _insert(session, RollupCheck).values(row)
        session.execute(stmt.on_conflict_do_update(index_elements=["zone", "source"], set_=row))


def fill(session: Session, zone: str, source: Source, first: date, last: date) -> int:
    """Roll up the days in [first, last] the rollup lacks for `zone`; returns how many there were.
    The caller makes sure they are closed."""
    table: Any = source.rollup
    tz = ZoneInfo(zone)
    present = {
        as_date(d)
        for d in session.scalars(
            select(table.day).where(table.zone == zone, table.day >= first, table.day <= last).distinct()
        )
    }
    missing = [d for d in days(first, last) if d not in present]
    if missing and session.get_bind().dialect.name == "postgresql":
        # A long run is a big aggregate, planned expensive: just-in-time compilation would cost
        # more than it saves, and the default work_mem spills its hash table to disk.
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))
    now = _wallclock()
    for a, b in _runs(missing):
        rows = source.rows(session, zone, midnight(a, tz), midnight(b + DAY, tz)).subquery()
        # WHERE true: SQLite would read the upsert's ON as a join's without it. In key order, so
        # that two requests filling the same days wait for each other instead of deadlocking.
        key = [rows.c[name] for name in source.columns if name in ("day", "previous")]
        stmt = select(literal(zone, String()), *rows.c, literal(now, UTCDateTime())).where(true()).order_by(*key)
        session.execute(
            _insert(session, table).from_select(["zone", *source.columns, "computed_at"], stmt).on_conflict_do_nothing()
        )
        zeros = [{"zone": zone, "day": d, **source.zero, "computed_at": now} for d in days(a, b)]
        session.execute(_insert(session, table).on_conflict_do_nothing(), zeros)
    return len(missing)


def _runs(ordered: list[date]) -> Iterator[tuple[date, date]]:
    """Consecutive days grouped into (first, last) runs."""
    run: list[date] = []
    for d in ordered:
        if run and d != run[-1] + DAY:
            yield run[0], run[-1]
            run = []
        run.append(d)
    if run:
        yield run[0], run[-1]


def prepare(session: Session, zone: str, first: date, last: date, settle: timedelta = SETTLE) -> None:
    """Make the rollups hold every closed day of [first, last], up to date."""
    checked = _checked(session, zone)
    for source in SOURCES:
        check(session, zone, source, checked.get(source.name), settle)
        fill(session, zone, source, first, last)


def _checked(session: Session, zone: str) -> dict[str, uuid.UUID]:
    rows = session.execute(select(RollupCheck.source, RollupCheck.checked).where(RollupCheck.zone == zone))
    return {name: key for name, key in rows}


def warm(db: Database, as_of: datetime, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fill the rollups for the closed days of the last WARM_DAYS, a month per transaction, so
    that no one waits for a cold fill on the dashboard. Shaped as a scheduled job (nightly)."""

    def month(session: Session, first: date, last: date) -> int:
        zone = program_service.get(session).timezone
        checked = _checked(session, zone)
        filled = 0
        for source in SOURCES:
            check(session, zone, source, checked.get(source.name))
            filled = max(filled, fill(session, zone, source, first, last))
        return filled

    tz = db.read(lambda s: program_service.zone(program_service.get(s)))
    last = (as_of - SETTLE).astimezone(tz).date() - DAY
    first = last - timedelta(days=WARM_DAYS - 1)
    filled = 0
    while first <= last:
        upto = min(last, first + timedelta(days=30))

        def run(session: Session, a: date = first, b: date = upto) -> int:
            return month(session, a, b)

        filled += db.write(run)
        if progress is not None:
            progress((upto - first).days + 1)
        first = upto + DAY
    return {"days": filled}
