"""`patron demo`: a realistic, repeatable demo programme."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron import demo
from patron.access import service as access
from patron.access.models import ApiKey
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import Database
from patron.kit import clock
from patron.kit.luhn import is_valid
from patron.ledger.models import PointAccount
from patron.members.models import ConsentEvent, Member
from patron.program import service as program_service
from tests.conftest import TEST_SECRET

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
