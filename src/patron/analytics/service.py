"""The dashboard's figures, computed set-wise by the database.

What a figure means:

* members: everyone enrolled and not erased, now; `new`: enrolled within the period (and not
  erased); `active`: made at least one purchase within the period (by the purchase's
  `occurred_at`).
* points issued: credits of the period (`earn`, `bonus`, and positive `adjust`); redeemed:
  `redeem` less what returns gave back (`restore`); expired: `expire`. Reversals by returns and
  negative adjustments are shown apart. All by the ledger entry's `created_at`.
* outstanding: the points members hold now (available + pending), and their value at the
  programme's current `point_value` (the liability).
* tiers: members per tier now, in ladder order; segments: each segment's size at its last refresh.

The period is whole days in the programme's time zone, [start 00:00, end + 1 day 00:00). Every
figure is counted per local day (exact across daylight-saving changes); the charts' buckets are
runs of whole days (one day up to 62 days, wider beyond).

Cost (PostgreSQL, a million members, ten million ledger entries). The period-dependent figures
come from the rollups of closed days (see `rollups`): one row per day, a few hundred per day for
purchases, filled on demand the first time a day is asked for (or beforehand by `rollups.warm`).
Only the open days (today, and yesterday until SETTLE past midnight) are read live: ledger entries
by the index on `created_at`, members by `enrolled_at`, purchasers by `occurred_at` with one probe
each of `(member_id, occurred_at)` for whether they already bought earlier in the period; erased
members by a small partial index. The figures of "now" are one scan of `members` for members per
tier (see models.py for why there is no index) and one of `point_accounts` for the outstanding
balance. Every figure is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from patron.analytics import rollups
from patron.analytics.models import EnrolmentDay, LedgerDay, PurchaseDay
from patron.analytics.rollups import DAY, POINT_FIGURES, as_date, days, local_day, midnight
from patron.kit.money import from_minor
from patron.ledger.models import LedgerEntry, PointAccount
from patron.members.models import Member
from patron.program import service as program_service
from patron.segments.models import Segment
from patron.tiers.models import Tier
from patron.transactions.models import Transaction

MAX_BUCKETS = 62
MAX_DAYS = 3660


@dataclass(frozen=True)
class Bucket:
    start: date
    days: int
    new_members: int = 0
    issued: int = 0
    redeemed: int = 0
    expired: int = 0


@dataclass(frozen=True)
class Dashboard:
    start: date
    end: date  # inclusive
    currency: str
    members: int
    new_members: int
    active_members: int
    points_issued: int
    points_redeemed: int
    points_expired: int
    points_reversed: int
    points_adjusted_down: int
    outstanding_available: int
    outstanding_pending: int
    outstanding_value: Decimal
    point_value: Decimal
    tiers: list[tuple[str, str, int]]  # code, name, members
    segments: list[tuple[str, str, int | None]]  # code, name, size at the last refresh
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def outstanding(self) -> int:
        return self.outstanding_available + self.outstanding_pending


def bucket_days(start: date, end: date) -> int:
    days = (end - start).days + 1
    return max(1, -(-days // MAX_BUCKETS))


@dataclass
class _Period:
    """The figures of a period that add up per day, and its active members."""

    points: dict[date, tuple[int, ...]] = field(default_factory=dict)
    new_members: dict[date, int] = field(default_factory=dict)
    active: int = 0


def _live(session: Session, zone: str, first: date, last: date, period_start: date) -> _Period:
    """[first, last] from the source tables; `active` counts those who bought in it and not
    earlier in the period (from `period_start`)."""
    tz = ZoneInfo(zone)
    since, until = midnight(first, tz), midnight(last + DAY, tz)
    day = local_day(session, LedgerEntry.created_at, zone).label("day")
    points = session.execute(
        select(day, *rollups.ledger_sums())
        .where(LedgerEntry.created_at >= since, LedgerEntry.created_at < until)
        .group_by(day)
    )
    enrolled = local_day(session, Member.enrolled_at, zone).label("day")
    new_members = session.execute(
        select(enrolled, func.count())
        .where(Member.enrolled_at >= since, Member.enrolled_at < until, Member.status != "erased")
        .group_by(enrolled)
    )
    t, earlier = Transaction, aliased(Transaction)
    purchasers = select(t.member_id).where(t.occurred_at >= since, t.occurred_at < until, t.member_id.is_not(None))
    if period_start < first:
        bought_before = (
            select(earlier.id)
            .where(
                earlier.member_id == t.member_id,
                earlier.occurred_at >= midnight(period_start, tz),
                earlier.occurred_at < since,
            )
            .exists()
        )
        purchasers = purchasers.where(~bought_before)
    active = session.scalar(select(func.count()).select_from(purchasers.distinct().subquery()))
    return _Period(
        points={as_date(row[0]): tuple(int(v) for v in row[1:]) for row in points},
        new_members={as_date(d): int(n) for d, n in new_members},
        active=int(active or 0),
    )


def _closed(session: Session, zone: str, first: date, last: date) -> _Period:
    """[first, last], closed days, from the rollups (which the caller has prepared)."""
    tz = ZoneInfo(zone)
    points = session.execute(
        select(LedgerDay.day, *(getattr(LedgerDay, f) for f in POINT_FIGURES)).where(
            LedgerDay.zone == zone, LedgerDay.day >= first, LedgerDay.day <= last
        )
    )
    enrolled = dict(
        session.execute(
            select(EnrolmentDay.day, EnrolmentDay.enrolled).where(
                EnrolmentDay.zone == zone, EnrolmentDay.day >= first, EnrolmentDay.day <= last
            )
        ).all()
    )
    erased_day = local_day(session, Member.enrolled_at, zone).label("day")
    erased = session.execute(
        select(erased_day, func.count())
        .where(
            Member.status == "erased",
            Member.enrolled_at >= midnight(first, tz),
            Member.enrolled_at < midnight(last + DAY, tz),
        )
        .group_by(erased_day)
    )
    new_members = {as_date(d): int(n) for d, n in enrolled.items()}
    for d, n in erased:
        new_members[as_date(d)] = new_members.get(as_date(d), 0) - int(n)
    active = session.scalar(
        select(func.coalesce(func.sum(PurchaseDay.members), 0)).where(
            PurchaseDay.zone == zone, PurchaseDay.day >= first, PurchaseDay.day <= last, PurchaseDay.previous < first
        )
    )
    return _Period(
        points={as_date(row[0]): tuple(int(v) for v in row[1:]) for row in points},
        new_members=new_members,
        active=int(active or 0),
    )


def _period(session: Session, zone: str, start: date, end: date, settle: timedelta, rollup: bool) -> _Period:
    last_closed = min(end, rollups.last_closed_day(ZoneInfo(zone), settle))
    if last_closed < start or not rollup:
        return _live(session, zone, start, end, start)
    try:
        with session.begin_nested():
            rollups.prepare(session, zone, start, last_closed, settle)
    except OperationalError:
        # Another writer holds SQLite's lock: this request reads the source tables, a later one
        # fills the rollups.
        return _live(session, zone, start, end, start)
    period = _closed(session, zone, start, last_closed)
    if last_closed < end:
        today = _live(session, zone, last_closed + DAY, end, start)
        period.points.update(today.points)
        period.new_members.update(today.new_members)
        period.active += today.active
    return period


def dashboard(
    session: Session, start: date, end: date, *, settle: timedelta = rollups.SETTLE, rollup: bool = True
) -> Dashboard:
    """The figures of [start, end]. `settle`: see `rollups.SETTLE` (tests shorten it); without
    `rollup`, every figure is read from the source tables (the benchmark's baseline)."""
    if end < start:
        start, end = end, start
    if (end - start).days > MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS)
    program = program_service.get(session)
    zone = program.timezone
    width_days = bucket_days(start, end)
    total_days = (end - start).days + 1
    count = -(-total_days // width_days)

    # Members now, by tier: one scan gives the total and the distribution.
    per_tier = dict(
        session.execute(
            select(Member.tier_code, func.count()).where(Member.status != "erased").group_by(Member.tier_code)
        ).all()
    )
    ladder = session.execute(select(Tier.code, Tier.name).order_by(Tier.position)).all()
    tiers = [(code, name, int(per_tier.pop(code, 0))) for code, name in ladder]
    tiers += [(code, code, int(n)) for code, n in sorted(per_tier.items())]  # codes no longer on the ladder
    members = sum(n for _, _, n in tiers)

    period = _period(session, zone, start, end, settle, rollup)

    zero = (0,) * len(POINT_FIGURES)
    totals = [0] * len(POINT_FIGURES)
    buckets = []
    for i in range(count):
        first = start + timedelta(days=i * width_days)
        length = min(width_days, total_days - i * width_days)
        sums = [0] * len(POINT_FIGURES)
        new = 0
        for d in days(first, first + timedelta(days=length - 1)):
            new += period.new_members.get(d, 0)
            for k, v in enumerate(period.points.get(d, zero)):
                sums[k] += v
        totals = [t + v for t, v in zip(totals, sums, strict=True)]
        buckets.append(
            Bucket(start=first, days=length, new_members=new, issued=sums[0], redeemed=sums[1], expired=sums[2])
        )

    available, pending = session.execute(
        select(func.coalesce(func.sum(PointAccount.available), 0), func.coalesce(func.sum(PointAccount.pending), 0))
    ).one()
    outstanding = int(available) + int(pending)
    segments = [
        (code, name, size)
        for code, name, size in session.execute(select(Segment.code, Segment.name, Segment.size).order_by(Segment.code))
    ]
    issued, redeemed, expired, reversed_, adjusted_down = totals
    return Dashboard(
        start=start,
        end=end,
        currency=program.currency,
        members=members,
        new_members=sum(b.new_members for b in buckets),
        active_members=period.active,
        points_issued=issued,
        points_redeemed=redeemed,
        points_expired=expired,
        points_reversed=reversed_,
        points_adjusted_down=adjusted_down,
        outstanding_available=int(available),
        outstanding_pending=int(pending),
        outstanding_value=from_minor(outstanding * program.point_value_minor, program.currency),
        point_value=program_service.point_value(program),
        tiers=tiers,
        segments=segments,
        buckets=buckets,
    )
