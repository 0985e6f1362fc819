"""The dashboard's figures, exact, on SQLite and PostgreSQL (no browser)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from patron.access.principal import SYSTEM
from patron.analytics import members as member_reads
from patron.analytics import service as analytics
from patron.db import Database
from patron.kit import clock
from patron.ledger import service as ledger
from patron.ledger.schemas import AdjustmentIn, RedemptionIn
from patron.members import service as members
from patron.members.schemas import MemberCreate
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.transactions import service as transactions
from patron.transactions.schemas import TransactionIn

SECRET = b"test-secret-not-for-production"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=UTC)  # Moscow is UTC+3: the same local day


def enrol(db: Database, name: str, phone: str, day: int) -> Any:
    with clock.frozen(at(day)):
        body = MemberCreate(first_name="Ann", last_name=name, phone=phone, consents={"program_rules": True})
        return db.write(lambda s: members.enrol(s, SYSTEM, body)).id


def buy(db: Database, member_id: Any, total: str, day: int, ext: str) -> None:
    with clock.frozen(at(day)):
        body = TransactionIn(external_id=ext, member_id=member_id, total=Decimal(total))
        db.write(lambda s: transactions.post(s, SYSTEM, body, SECRET))


def test_dashboard_figures(db: Database) -> None:
    db.write(
        lambda s: rules.create(s, SYSTEM, RuleIn(name="1 per 100", kind="spend", points=1, per_amount=Decimal(100)))
    )
    a = enrol(db, "Alpha", "+79160000001", 1)
    b = enrol(db, "Beta", "+79160000002", 2)
    enrol(db, "Gamma", "+79160000003", 10)
    buy(db, a, "1000.00", 2, "t-a")
    buy(db, b, "500.00", 3, "t-b")
    with clock.frozen(at(3)):
        db.write(lambda s: ledger.adjust(s, SYSTEM, a, AdjustmentIn(external_id="adj-a", points=40, reason="goodwill")))
    with clock.frozen(at(4)):
        db.write(lambda s: ledger.adjust(s, SYSTEM, b, AdjustmentIn(external_id="adj-b", points=-2, reason="typo")))
        db.write(lambda s: ledger.redeem(s, SYSTEM, a, RedemptionIn(external_id="red-a", points=20)))

    d = db.read(lambda s: analytics.dashboard(s, date(2026, 3, 1), date(2026, 3, 5)))
    assert (d.members, d.new_members, d.active_members) == (3, 2, 2)
    assert (d.points_issued, d.points_redeemed, d.points_expired, d.points_reversed, d.points_adjusted_down) == (
        55,
        20,
        0,
        0,
        2,
    )
    assert (d.outstanding_available, d.outstanding_pending, d.outstanding) == (33, 0, 33)
    assert (d.outstanding_value, d.point_value, d.currency) == (Decimal("33.00"), Decimal("1.00"), "RUB")
    assert [(b.start.day, b.days, b.new_members, b.issued, b.redeemed, b.expired) for b in d.buckets] == [
        (1, 1, 1, 0, 0, 0),
        (2, 1, 1, 10, 0, 0),
        (3, 1, 0, 45, 0, 0),
        (4, 1, 0, 0, 20, 0),
        (5, 1, 0, 0, 0, 0),
    ]
    assert [(code, n) for code, _name, n in d.tiers] == [("member", 3)]
    assert [code for code, _name, _size in d.segments] == ["new", "regular", "vip"]

    # A period outside the history: members are counted now, the period's figures are zero.
    later = db.read(lambda s: analytics.dashboard(s, date(2026, 4, 1), date(2026, 6, 30)))
    assert (later.members, later.new_members, later.active_members, later.points_issued) == (3, 0, 0, 0)
    assert [b.days for b in later.buckets] == [2] * 45 + [1]  # 91 days in buckets of 2 (the last one short)
    assert later.outstanding == 33


def test_member_list_filters(db: Database) -> None:
    a = enrol(db, "Filterable", "+79160000011", 1)
    enrol(db, "Filterable", "+79160000012", 1)
    db.write(lambda s: members.block(s, SYSTEM, a, "fraud"))
    found = db.read(
        lambda s: member_reads.find(s, q="filterable", status="blocked", tier=None, segment=None, limit=50, cursor=None)
    )
    assert [m.id for m in found[0]] == [a]
    both = db.read(
        lambda s: member_reads.find(s, q="filterable", status=None, tier="member", segment=None, limit=50, cursor=None)
    )
    assert len(both[0]) == 2
    none = db.read(
        lambda s: member_reads.find(s, q="filterable", status=None, tier=None, segment="vip", limit=50, cursor=None)
    )
    assert none[0] == []
