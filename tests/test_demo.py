"""`patron demo`: a realistic, repeatable demo programme."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron import demo
from patron.access import service as access
from patron.access.models import ApiKey
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import Database
from patron.kit import clock
from patron.kit.luhn import is_valid
from patron.ledger.models import LedgerEntry, PointAccount
from patron.ledger.verify import verify
from patron.members.models import ConsentEvent, Member
from patron.program import service as program_service
from patron.rules.models import EarningRule
from patron.segments.models import SegmentMember
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.transactions.models import Transaction, TransactionLine, TransactionReturn
from tests.conftest import TEST_SECRET, settings_for

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = TEST_SECRET.encode()


def count(db: Database, model: type, *where: object) -> int:
    return db.read(lambda s: int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0))


def without_ids(members: list[demo.NewMember]) -> list[dict[str, object]]:
    return [{k: v for k, v in asdict(m).items() if k != "id"} for m in members]


def test_demo_creates_a_programme_with_members_and_cards(db):
    with clock.frozen(NOW):
        result = demo.run(db, SYSTEM, count=120, seed=7, secret=SECRET)

    assert result.members == count(db, Member) == 120
    assert count(db, PointAccount) == 120
    assert count(db, ConsentEvent, ConsentEvent.kind == "program_rules") == 120
    program = db.read(program_service.get)
    assert (program.name, program.currency, program.timezone) == (demo.PROGRAM_NAME, "RUB", "Europe/Moscow")

    rows = db.read(lambda s: s.execute(select(Member)).scalars().all())
    holders = db.read(
        lambda s: set(s.scalars(select(Card.member_id).where(Card.kind == "loyalty", Card.status == "active")))
    )
    assert len(holders) >= 90  # most members carry an active loyalty card
    assert all(is_valid(n) for n in db.read(lambda s: s.scalars(select(Card.number).where(Card.kind == "loyalty"))))
    assert all(m.phone is None or (m.phone.startswith("+79") and len(m.phone) == 12) for m in rows)
    assert all(m.email is None or m.email.split("@")[1] in ("example.com", "example.net", "example.org") for m in rows)
    assert all(m.email or m.phone for m in rows)
    languages = Counter(m.language for m in rows)
    assert languages["ru"] > languages["en"] > 0
    assert sum(1 for m in rows if m.attributes.get("car_make") in demo.CARS) >= 90
    assert {m.location for m in rows} <= {loc.code for loc in demo.LOCATIONS} | {None}
    assert all(NOW - timedelta(days=demo.ENROLMENT_DAYS + 1) <= m.enrolled_at <= NOW for m in rows)
    assert all(m.rules_accepted_at == m.enrolled_at for m in rows)

    assert result.blocked_members == count(db, Member, Member.status == "blocked") >= 1
    assert result.blocked_cards == count(db, Card, Card.status == "blocked") >= 1
    assert result.replaced_cards == count(db, Card, Card.status == "replaced") >= 1
    bank = db.read(lambda s: s.scalars(select(Card).where(Card.kind == "bank")).all())
    assert len(bank) == result.bank_cards == 3
    assert sorted(c.pan_hash for c in bank) == sorted(cards.pan_hash(SECRET, pan) for pan in demo.BANK_TEST_PANS)
    assert all(c.number is None and c.last4 and len(c.last4) == 4 for c in bank)

    admin = db.read(lambda s: access.authenticate_key(s, result.admin_key))
    cashier = db.read(lambda s: access.authenticate_key(s, result.cashier_key))
    assert admin is not None and admin.role == Role.ADMIN
    assert cashier is not None and (cashier.role, cashier.location) == (Role.CASHIER, "MSK-01")
    assert result.sample is not None
    name, phone, number = result.sample
    member = db.read(lambda s: cards.identify(s, "card", number, SECRET))
    assert (f"{member.first_name} {member.last_name}", member.phone) == (name, phone)


def test_the_same_seed_gives_the_same_members():
    def generated(seed: int) -> list[dict[str, object]]:
        return without_ids(list(demo.members_of(demo.plan(300, seed, NOW, "7800"))))

    first = generated(11)
    assert first == generated(11)
    assert first != generated(12)
    assert len({m["email"] for m in first if m["email"]}) == sum(1 for m in first if m["email"])
    assert len({m["phone"] for m in first if m["phone"]}) == sum(1 for m in first if m["phone"])
    assert len({m["number"] for m in first}) == len({m["referral_code"] for m in first}) == 300
    assert len({m["card"] for m in first if m["card"]}) == sum(1 for m in first if m["card"])


def test_the_database_holds_the_seeded_members(db):
    with clock.frozen(NOW):
        demo.run(db, SYSTEM, count=40, seed=3, secret=SECRET)
    expected = list(demo.members_of(demo.plan(40, 3, NOW, "7800")))
    stored = db.read(lambda s: s.execute(select(Member.number, Member.email, Member.phone, Member.enrolled_at)).all())
    assert sorted(stored) == sorted((m.number, m.email, m.phone, m.enrolled_at) for m in expected)


def test_a_tiny_demo(db):
    result = demo.run(db, SYSTEM, count=3, seed=1, secret=SECRET)
    assert (result.members, result.blocked_members, result.blocked_cards) == (3, 0, 0)
    assert count(db, Member) == 3


def test_demo_command_if_empty_is_idempotent(db, db_url):
    from patron.cli import app

    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    first = runner.invoke(app, ["demo", "--members", "30", "--seed", "5", "--if-empty"], env=env)
    assert first.exit_code == 0, first.output
    assert "http://127.0.0.1:8000/docs" in first.stdout
    assert f"History of 30 members: {count(db, Transaction)} purchases" in first.stdout
    assert "Tiers: Bronze " in first.stdout
    admin_key = first.stdout.strip().splitlines()[-1]
    assert db.read(lambda s: access.authenticate_key(s, admin_key)).role == Role.ADMIN
    keys = count(db, ApiKey)

    second = runner.invoke(app, ["demo", "--members", "30", "--if-empty"], env=env)
    assert second.exit_code == 0, second.output
    assert "already has 30 members; no demo data added" in second.stdout
    assert "patron keys create --role admin" in second.stdout
    assert (count(db, Member), count(db, ApiKey)) == (30, keys)

    third = runner.invoke(app, ["demo"], env=env)
    assert third.exit_code == 1
    assert "already has 30 members" in third.output


@pytest.mark.parametrize("seed", [1, 2])
def test_plan_picks_distinct_members_for_staff_actions(seed):
    p = demo.plan(1000, seed, NOW, "7800")
    assert p.blocked_cards.isdisjoint(p.replaced_cards)
    assert not set(p.bank_cards) & p.blocked_members
    assert len(p.bank_cards) == 3


def test_demo_configures_the_programme_through_the_services(db):
    with clock.frozen(NOW):
        demo.run(db, SYSTEM, count=30, seed=2, secret=SECRET)

    program = db.read(program_service.get)
    assert (program.pending_days, program.expiry_policy, program.expiry_days) == (7, "after_days", 365)
    kinds = db.read(lambda s: sorted(s.scalars(select(EarningRule.kind))))
    assert kinds == sorted(r["kind"] for r in demo.EARNING_RULES)
    assert {"spend", "category", "multiplier", "visit", "welcome", "event"} <= set(kinds)
    ladder = db.read(tiers.ladder)
    assert [(t.code, t.threshold, str(t.multiplier)) for t in ladder] == [
        ("bronze", 0, "1"),
        ("silver", 25_000, "1.25"),
        ("gold", 60_000, "1.5"),
    ]
    assert "Personal manager" in ladder[-1].benefits
    assert (program.tier_metric, program.tier_window_days) == ("spend", 365)
    actions = Counter(db.read(lambda s: list(s.scalars(select(AuditEntry.action)))))
    assert actions["rule.create"] == len(demo.EARNING_RULES)
    assert actions["tiers.update"] == actions["program.update"] == 1
    assert actions["job.run"] == 3  # release-pending, expire-points and refresh-segments as of now


def test_demo_history_is_posted_through_the_services(db):
    progress: list[int] = []
    with clock.frozen(NOW):
        result = demo.run(db, SYSTEM, count=30, seed=2, secret=SECRET, on_progress=progress.append)

    assert sum(progress) == 30
    assert result.history_members == 30
    txns = db.read(lambda s: s.scalars(select(Transaction)).all())
    assert len(txns) == result.purchases > 30  # regulars come back
    assert count(db, TransactionLine) > len(txns)
    assert count(db, TransactionReturn) == result.returns >= 1
    assert result.surveys >= 1
    enrolled = dict(db.read(lambda s: s.execute(select(Member.id, Member.enrolled_at)).all()))
    assert all(enrolled[t.member_id] < t.occurred_at < t.created_at <= NOW for t in txns)
    assert all(t.created_at - t.occurred_at <= timedelta(minutes=10) for t in txns)
    assert all(t.actor_kind == SYSTEM.kind and t.channel == "pos" for t in txns)
    # Everyone goes to their usual service centre.
    centres: dict[object, set[str | None]] = {}
    for t in txns:
        centres.setdefault(t.member_id, set()).add(t.location)
    assert all(len(c) == 1 and c <= {loc.code for loc in demo.LOCATIONS} for c in centres.values())
    assert any(t.points_redeemed for t in txns)  # some paid with points

    entries = db.read(
        lambda s: s.execute(select(LedgerEntry.kind, LedgerEntry.points, LedgerEntry.transaction_id)).all()
    )
    earned = {tid for kind, _, tid in entries if kind == "earn"}
    assert earned == {t.id for t in txns if t.points_earned}
    by_kind = Counter()
    for kind, points, _ in entries:
        by_kind[kind] += points
    assert by_kind["earn"] == result.points_earned == sum(t.points_earned for t in txns) > 0
    assert by_kind["bonus"] == result.points_bonus == 30 * 300 + result.surveys * 50
    welcomes = db.read(
        lambda s: s.execute(
            select(LedgerEntry.created_at, Member.enrolled_at)
            .join(Member, Member.id == LedgerEntry.member_id)
            .where(LedgerEntry.reason == "Welcome to the club")
        ).all()
    )
    assert len(welcomes) == 30 and all(paid == enrolled for paid, enrolled in welcomes)  # paid at enrolment
    assert -by_kind["redeem"] == result.points_redeemed > 0
    assert -by_kind["reverse"] == result.points_reversed
    assert result.points_issued == result.points_earned + result.points_bonus

    checked, mismatches = db.read(verify)
    assert (checked, mismatches) == (30, [])
    accounts = db.read(lambda s: s.scalars(select(PointAccount)).all())
    assert sum(a.pending for a in accounts) > 0  # last week's points wait out the 7 days

    tiers_now = Counter(db.read(lambda s: list(s.scalars(select(Member.tier_code)))))
    assert tiers_now["silver"] + tiers_now["gold"] >= 1
    assert dict(result.tiers) == {
        "Bronze": tiers_now["bronze"],
        "Silver": tiers_now["silver"],
        "Gold": tiers_now["gold"],
    }
    upgrades = db.read(lambda s: s.scalars(select(TierChange)).all())
    assert upgrades and all(c.reason == "purchase" and c.changed_at < NOW for c in upgrades)


def summary(db: Database) -> dict[str, object]:
    """What two runs of the same demo must share: everything but ids and wall-clock times."""

    def read(s):  # type: ignore[no-untyped-def]
        members = s.execute(
            select(Member.number, Member.tier_code, PointAccount.available, PointAccount.pending, PointAccount.redeemed)
            .join(PointAccount, PointAccount.member_id == Member.id)
            .order_by(Member.number)
        ).all()
        txns = s.execute(
            select(Member.number, Transaction.external_id, Transaction.occurred_at, Transaction.total_minor)
            .join(Member, Member.id == Transaction.member_id)
            .order_by(Transaction.external_id)
        ).all()
        entries = s.execute(
            select(LedgerEntry.kind, func.count(), func.sum(LedgerEntry.points))
            .group_by(LedgerEntry.kind)
            .order_by(LedgerEntry.kind)
        ).all()
        return {"members": [tuple(r) for r in members], "txns": [tuple(r) for r in txns], "entries": entries}

    return db.read(read)


def test_the_same_seed_gives_the_same_history(db, sqlite_template: Path, tmp_path: Path):
    path = tmp_path / "second.db"
    shutil.copyfile(sqlite_template, path)
    other = Database(settings_for(f"sqlite:///{path}"))
    try:
        with clock.frozen(NOW):
            first = demo.run(db, SYSTEM, count=30, seed=4, secret=SECRET)
            second = demo.run(other, SYSTEM, count=30, seed=4, secret=SECRET)
        keys = ("admin_key", "cashier_key")
        assert {k: v for k, v in asdict(first).items() if k not in keys} == {
            k: v for k, v in asdict(second).items() if k not in keys
        }
        assert summary(db) == summary(other)
    finally:
        other.dispose()


def test_a_large_demo_gives_a_history_to_the_first_members_only(db, monkeypatch):
    monkeypatch.setattr(demo, "HISTORY_ALL_UP_TO", 20)
    monkeypatch.setattr(demo, "HISTORY_MEMBERS", 8)
    progress: list[int] = []
    with clock.frozen(NOW):
        result = demo.run(db, SYSTEM, count=30, seed=2, secret=SECRET, batch_size=7, on_progress=progress.append)

    assert (result.members, result.history_members, sum(progress)) == (30, 8, 30)
    numbers = [m.number for m in demo.members_of(demo.plan(30, 2, NOW, "7800"))]
    with_history = db.read(
        lambda s: set(s.scalars(select(Member.number).join(LedgerEntry, LedgerEntry.member_id == Member.id).distinct()))
    )
    assert with_history == set(numbers[:8])
    assert db.read(verify) == (30, [])


def test_demo_members_are_in_segments_after_the_demo(db):
    with clock.frozen(NOW):
        demo.run(db, SYSTEM, count=30, seed=2, secret=SECRET)
    counts = dict(
        db.read(
            lambda s: s.execute(
                select(SegmentMember.segment_code, func.count()).group_by(SegmentMember.segment_code)
            ).all()
        )
    )
    # The shipped segments do not overlap, and 30 members with history fall into at least one.
    assert set(counts) <= {"vip", "regular", "new"}
    assert sum(counts.values()) > 0
