"""The dashboard's rollups: closed days read back from them, open days live, late rows, time zones.

Exact figures on SQLite and PostgreSQL. `settle=ZERO` closes a day at its midnight and lets a
check look back no further than the previous one: the tests run in milliseconds, not minutes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, update

from patron.access.principal import SYSTEM
from patron.analytics import rollups
from patron.analytics import service as analytics
from patron.analytics.models import EnrolmentDay, LedgerDay, PurchaseDay, RollupCheck
from patron.db import Database
from patron.kit import clock
from patron.ledger import service as ledger
from patron.ledger.schemas import AdjustmentIn, RedemptionIn
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import MemberCreate
from patron.program import service as program_service
from patron.program.schemas import ProgramPatch
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.transactions import service as transactions
from patron.transactions.schemas import TransactionIn

SECRET = b"test-secret-not-for-production"
ZERO = timedelta(0)
MSK = 3  # Europe/Moscow is UTC+3 all year


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """March 2026, `hour` o'clock in Moscow."""
    return datetime(2026, 3, day, 0, minute, tzinfo=UTC) + timedelta(hours=hour - MSK)


def d(day: int) -> date:
    return date(2026, 3, day)


def enrol(db: Database, name: str, phone: str, when: datetime) -> Any:
    with clock.frozen(when):
        body = MemberCreate(first_name="Ann", last_name=name, phone=phone, consents={"program_rules": True})
        return db.write(lambda s: members.enrol(s, SYSTEM, body)).id


def buy(db: Database, member_id: Any, total: str, when: datetime, ext: str, occurred: datetime | None = None) -> None:
    with clock.frozen(when):
        body = TransactionIn(external_id=ext, member_id=member_id, total=Decimal(total), occurred_at=occurred)
        db.write(lambda s: transactions.post(s, SYSTEM, body, SECRET))


def figures(db: Database, first: int, last: int, now: datetime) -> analytics.Dashboard:
    with clock.frozen(now):
        return db.read(lambda s: analytics.dashboard(s, d(first), d(last), settle=ZERO))


def per_day(dash: analytics.Dashboard) -> list[tuple[int, int, int, int]]:
    return [(b.start.day, b.new_members, b.issued, b.redeemed) for b in dash.buckets]


def rollup_days(db: Database, model: Any, zone: str = "Europe/Moscow") -> list[int]:
    days = db.read(lambda s: s.scalars(select(model.day).where(model.zone == zone).distinct()).all())
    return sorted(day.day for day in days)


def setup(db: Database) -> tuple[Any, Any, Any]:
    """Three members and a week of activity; 1 point per 100 spent."""
    db.write(
        lambda s: rules.create(s, SYSTEM, RuleIn(name="1 per 100", kind="spend", points=1, per_amount=Decimal(100)))
    )
    a = enrol(db, "Alpha", "+79160000001", at(1))
    b = enrol(db, "Beta", "+79160000002", at(2))
    c = enrol(db, "Gamma", "+79160000003", at(2, 23, 30))
    buy(db, a, "1000.00", at(1, 18), "t-a1")  # +10, on the day Alpha joined
    buy(db, a, "2000.00", at(3), "t-a3")  # +20
    buy(db, b, "500.00", at(3, 9), "t-b3")  # +5
    buy(db, c, "300.00", at(4), "t-c4")  # +3
    with clock.frozen(at(4, 15)):
        db.write(lambda s: ledger.adjust(s, SYSTEM, a, AdjustmentIn(external_id="adj-a", points=40, reason="goodwill")))
        db.write(lambda s: ledger.adjust(s, SYSTEM, b, AdjustmentIn(external_id="adj-b", points=-2, reason="typo")))
    with clock.frozen(at(5)):
        db.write(lambda s: ledger.redeem(s, SYSTEM, a, RedemptionIn(external_id="red-a", points=20)))
    return a, b, c


def test_closed_days_are_read_back_from_the_rollups(db: Database) -> None:
    setup(db)
    now = at(6, 10)  # days 1 to 5 are closed, day 6 is open
    first = figures(db, 1, 6, now)
    assert (first.members, first.new_members, first.active_members) == (3, 3, 3)
    assert (first.points_issued, first.points_redeemed, first.points_adjusted_down) == (78, 20, 2)
    assert per_day(first) == [(1, 1, 10, 0), (2, 2, 0, 0), (3, 0, 25, 0), (4, 0, 43, 0), (5, 0, 0, 20), (6, 0, 0, 0)]
    # Every closed day has its rows, quiet ones included; the open day has none.
    assert rollup_days(db, LedgerDay) == rollup_days(db, EnrolmentDay) == [1, 2, 3, 4, 5]
    assert rollup_days(db, PurchaseDay) == [1, 2, 3, 4, 5]

    # The second time, the closed days come from the rollup rows, whatever they say.
    db.write(
        lambda s: s.execute(
            update(LedgerDay).where(LedgerDay.day == d(3), LedgerDay.zone == "Europe/Moscow").values(issued=1000)
        )
    )
    tampered = figures(db, 1, 6, now)
    assert [b.issued for b in tampered.buckets] == [10, 0, 1000, 43, 0, 0]
    # A missing row is computed again, from the ledger.
    db.write(lambda s: s.execute(delete(LedgerDay).where(LedgerDay.day == d(3))))
    again = figures(db, 1, 6, now)
    assert per_day(again) == per_day(first)
    assert rollup_days(db, LedgerDay) == [1, 2, 3, 4, 5]

    # A period inside the closed days only, and one inside the open day only.
    assert figures(db, 2, 4, now).active_members == 3
    assert figures(db, 4, 5, now).active_members == 1  # Gamma on day 4; day 5 had a redemption, no purchase
    today = figures(db, 6, 6, now)
    assert (today.new_members, today.active_members, today.points_issued) == (0, 0, 0)


def test_activity_after_a_rollup_counts_today_live(db: Database) -> None:
    a, b, c = setup(db)
    now = at(6, 10)
    assert figures(db, 2, 6, now).active_members == 3
    # Today: Alpha buys again (already active on day 3), a new member joins and buys.
    buy(db, a, "700.00", at(6, 10, 30), "t-a6")
    d6 = enrol(db, "Delta", "+79160000004", at(6, 11))
    buy(db, d6, "900.00", at(6, 11, 30), "t-d6")
    later = figures(db, 2, 6, at(6, 12))
    assert (later.members, later.new_members, later.active_members) == (4, 3, 4)
    assert per_day(later)[-1] == (6, 1, 16, 0)
    assert later.points_issued == 68 + 16
    # Only today: Alpha and Delta. From day 4: Gamma (day 4), Alpha and Delta (today).
    assert figures(db, 6, 6, at(6, 12)).active_members == 2
    assert figures(db, 4, 6, at(6, 12)).active_members == 3
    # The next day, day 6 is closed and comes from the rollups with the same figures.
    tomorrow = figures(db, 2, 6, at(7, 9))
    assert per_day(tomorrow) == per_day(later)
    assert tomorrow.active_members == 4
    assert rollup_days(db, LedgerDay)[-1] == 6


def test_rows_arriving_late_for_a_closed_day_replace_its_rollup(db: Database) -> None:
    a, b, c = setup(db)
    now = at(6, 10)
    before = figures(db, 1, 6, now)
    assert before.active_members == 3
    assert figures(db, 4, 5, now).active_members == 1
    # A till that was offline posts Beta's purchase of day 4 on day 6.
    buy(db, b, "800.00", at(6, 10, 5), "t-b4-late", occurred=at(4, 16))
    after = figures(db, 4, 5, at(6, 10, 10))
    assert after.active_members == 2
    # Points are counted when the ledger got them (day 6), purchases when they happened (day 4).
    whole = figures(db, 1, 6, at(6, 10, 10))
    assert [b.issued for b in whole.buckets] == [10, 0, 25, 43, 0, 8]
    assert whole.active_members == 3
    # Beta's next purchase day after day 3 is now day 4: from day 4 on, Beta counts once.
    buy(db, b, "100.00", at(6, 10, 20), "t-b5-late", occurred=at(5, 9))
    assert figures(db, 4, 5, at(6, 10, 30)).active_members == 2
    assert figures(db, 5, 5, at(6, 10, 30)).active_members == 1
    # An erased member no longer counts among the new ones of its enrolment day.
    db.write(lambda s: s.execute(update(Member).where(Member.id == c).values(status="erased")))
    erased = figures(db, 1, 6, at(6, 10, 30))
    assert (erased.members, erased.new_members) == (2, 2)
    assert per_day(erased)[1] == (2, 1, 0, 0)


def test_a_change_of_time_zone_cuts_days_afresh(db: Database) -> None:
    setup(db)
    now = at(6, 10)
    figures(db, 1, 6, now)  # the Moscow rollups exist
    # An entry at 01:00 on day 5 in Moscow: 22:00 UTC on day 4.
    with clock.frozen(at(5, 1)):
        a = db.read(lambda s: s.scalar(select(Member.id).where(Member.last_name == "Alpha")))
        db.write(lambda s: ledger.adjust(s, SYSTEM, a, AdjustmentIn(external_id="adj-night", points=7, reason="x")))
    moscow = figures(db, 1, 6, now)
    assert [b.issued for b in moscow.buckets] == [10, 0, 25, 43, 7, 0]

    with clock.frozen(now):
        db.write(lambda s: program_service.update(s, SYSTEM, ProgramPatch(timezone="UTC")))
    utc = figures(db, 1, 6, now)
    assert [b.issued for b in utc.buckets] == [10, 0, 25, 50, 0, 0]
    assert rollup_days(db, LedgerDay, "UTC") == [1, 2, 3, 4, 5]
    # Back to Moscow: its rows were kept, and are still right.
    with clock.frozen(now):
        db.write(lambda s: program_service.update(s, SYSTEM, ProgramPatch(timezone="Europe/Moscow")))
    assert [b.issued for b in figures(db, 1, 6, now).buckets] == [10, 0, 25, 43, 7, 0]


def test_days_are_exact_across_a_daylight_saving_change(db: Database) -> None:
    # Berlin moves from UTC+1 to UTC+2 on 29 March 2026 at 02:00.
    with clock.frozen(datetime(2026, 3, 20, tzinfo=UTC)):
        db.write(lambda s: program_service.update(s, SYSTEM, ProgramPatch(timezone="Europe/Berlin")))
    a = enrol(db, "Alpha", "+79160000001", datetime(2026, 3, 27, 12, tzinfo=UTC))
    for ext, when, points in (
        ("before", datetime(2026, 3, 28, 22, 59, tzinfo=UTC), 1),  # 23:59 on the 28th
        ("first", datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 2),  # 00:00 on the 29th
        ("last", datetime(2026, 3, 29, 21, 59, tzinfo=UTC), 4),  # 23:59 on the 29th (UTC+2)
        ("after", datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 8),  # 00:00 on the 30th
    ):
        with clock.frozen(when):
            db.write(
                lambda s, e=ext, p=points: ledger.adjust(
                    s, SYSTEM, a, AdjustmentIn(external_id=e, points=p, reason="x")
                )
            )
    for now in (datetime(2026, 3, 30, 9, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)):  # live, then rolled up
        with clock.frozen(now):
            dash = db.read(lambda s: analytics.dashboard(s, date(2026, 3, 28), date(2026, 3, 30), settle=ZERO))
        assert [b.issued for b in dash.buckets] == [1, 6, 8]


def test_wide_periods_add_days_into_buckets(db: Database) -> None:
    setup(db)
    dash = figures(db, 1, 6, at(20))
    with clock.frozen(at(20)):
        wide = db.read(lambda s: analytics.dashboard(s, date(2026, 1, 1), date(2026, 6, 30), settle=ZERO))
    # 181 days in buckets of 3: March 1 is day 59 of the period, in the bucket of Feb 27 to Mar 1.
    assert [b.days for b in wide.buckets] == [3] * 60 + [1]
    assert (wide.points_issued, wide.new_members, wide.active_members) == (
        dash.points_issued,
        dash.new_members,
        dash.active_members,
    )
    by_start = {b.start: (b.new_members, b.issued) for b in wide.buckets if b.new_members or b.issued}
    assert by_start == {date(2026, 2, 27): (1, 10), date(2026, 3, 2): (2, 68)}  # days 2 to 4
    checks = db.read(lambda s: s.scalar(select(func.count()).select_from(RollupCheck)))
    assert checks == 3  # one per source table, for the programme's zone


def test_the_warming_job_fills_the_last_400_closed_days(db: Database) -> None:
    setup(db)
    expected = per_day(figures(db, 1, 6, at(6, 10)))
    db.write(lambda s: s.execute(delete(LedgerDay)))
    with clock.frozen(at(6, 10)):
        assert rollups.warm(db, at(6, 10)) == {"days": 400}
    counts = db.read(
        lambda s: [s.scalar(select(func.count(func.distinct(m.day)))) for m in (LedgerDay, EnrolmentDay, PurchaseDay)]
    )
    assert counts == [400, 400, 400]
    assert db.read(lambda s: s.scalar(select(func.max(LedgerDay.day)))) == d(5)
    assert per_day(figures(db, 1, 6, at(6, 10))) == expected


def test_requests_filling_the_same_days_at_once_agree(db: Database) -> None:
    setup(db)
    expected = summary(figures(db, 1, 6, at(6, 10)))

    def cold(_: int) -> tuple[object, ...]:
        return summary(db.read(lambda s: analytics.dashboard(s, d(1), d(6), settle=ZERO)))

    for _ in range(3):
        db.write(lambda s: [s.execute(delete(m)) for m in (LedgerDay, EnrolmentDay, PurchaseDay)])
        with clock.frozen(at(6, 10)), ThreadPoolExecutor(4) as pool:  # the clock is global: frozen once
            assert list(pool.map(cold, range(4))) == [expected] * 4
    assert rollup_days(db, LedgerDay) == rollup_days(db, PurchaseDay) == [1, 2, 3, 4, 5]


def summary(dash: analytics.Dashboard) -> tuple[object, ...]:
    return (dash.members, dash.new_members, dash.active_members, dash.points_issued, dash.outstanding, per_day(dash))
