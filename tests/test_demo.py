"""`patron demo`: a realistic, repeatable demo programme."""

from __future__ import annotations

import random
import shutil
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron import demo
from patron import demo_history as history
from patron.access import service as access
from patron.access.models import ApiKey
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import Database
from patron.events import service as events
from patron.events.schemas import EventIn
from patron.jobs import registry as jobs
from patron.kit import clock
from patron.kit.luhn import is_valid
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry, LotAllocation, PointAccount, PointLot
from patron.ledger.verify import verify
from patron.members.importing import insert_members
from patron.members.models import ConsentEvent, Member
from patron.program import service as program_service
from patron.rules import bonuses, engine
from patron.rules.models import EarningRule
from patron.segments.models import SegmentMember
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.transactions import service as transactions
from patron.transactions.models import Transaction, TransactionLine, TransactionReturn
from patron.transactions.schemas import ItemIn, ReturnIn, ReturnItemIn, TransactionIn, TransactionOut
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
    # The README's API example asks for this phone, written the local way.
    assert phone == demo.SAMPLE_PHONE == "+79161234567"
    assert db.read(lambda s: cards.identify(s, "phone", "89161234567", SECRET)).id == member.id
    assert db.read(demo.sample_member) == result.sample


def test_the_sample_phone_is_one_members_even_when_the_codes_would_give_it_to_another(monkeypatch):
    def phones() -> list[str | None]:
        return [m.phone for m in demo.members_of(demo.plan(300, 3, NOW, "7800"))]

    first = phones()
    assert first.count(demo.SAMPLE_PHONE) == 1
    sample = first.index(demo.SAMPLE_PHONE)
    later = next(i for i, phone in enumerate(first) if i > sample and phone is not None)
    monkeypatch.setattr(demo, "SAMPLE_PHONE", first[later])  # a number the codes give to member `later`
    second = phones()
    assert second[sample] == first[later] and second.count(first[later]) == 1
    assert second[later] is not None and second[later] not in first
    assert len({p for p in second if p}) == sum(1 for p in second if p)


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
    assert "Start the server:  patron serve\n" in first.stdout
    sample = db.read(demo.sample_member)
    assert sample is not None and sample[1] == "+79161234567"
    assert f"Try it with {sample[0]} (phone +79161234567, card {sample[2]}):" in first.stdout
    assert '/v1/identify?phone=%2B79161234567"' in first.stdout
    assert f"History of 30 members: {count(db, Transaction)} purchases" in first.stdout
    assert "Tiers: Bronze " in first.stdout
    admin_key = first.stdout.strip().splitlines()[-1]
    assert db.read(lambda s: access.authenticate_key(s, admin_key)).role == Role.ADMIN
    keys = count(db, ApiKey)

    second = runner.invoke(app, ["demo", "--members", "30", "--if-empty", "--url", "http://0.0.0.0:8765/"], env=env)
    assert second.exit_code == 0, second.output
    assert "already has 30 members; no demo data added" in second.stdout
    # The addresses printed are where scripts/start serves (its HOST and PORT).
    assert "http://0.0.0.0:8765/pos " in second.stdout and ":8000" not in second.stdout
    hint = "An admin API key for the back office or curl:  export KEY=$(patron keys create --role admin | tail -1)\n"
    assert hint in second.stdout
    assert f"Try it with {sample[0]} (phone +79161234567" in second.stdout
    assert "Start the server" in second.stdout

    serving = runner.invoke(app, ["demo", "--if-empty", "--serving"], env=env)
    assert serving.exit_code == 0, serving.output
    assert "The server starts now:" in serving.stdout and "Start the server" not in serving.stdout
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


def test_every_member_has_a_history_as_the_services_write_it(db):
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
    assert min(t.occurred_at for t in txns) < NOW - timedelta(days=365)  # two years of history
    # Everyone goes to their usual service centre.
    centres: dict[object, set[str | None]] = {}
    for t in txns:
        centres.setdefault(t.member_id, set()).add(t.location)
    assert all(len(c) == 1 and c <= {loc.code for loc in demo.LOCATIONS} for c in centres.values())
    assert any(t.points_redeemed for t in txns)  # some paid with points
    # The answer the till got is served again as it was.
    answer = TransactionOut.model_validate(txns[0].answer)
    assert (answer.id, answer.member_id, answer.points_earned) == (txns[0].id, txns[0].member_id, txns[0].points_earned)
    assert answer.amount_due == Decimal(txns[0].amount_due_minor) / 100

    entries = db.read(
        lambda s: s.execute(select(LedgerEntry.kind, LedgerEntry.points, LedgerEntry.transaction_id)).all()
    )
    assert len(entries) == result.ledger_entries
    earned = {tid for kind, _, tid in entries if kind == "earn"}
    assert earned == {t.id for t in txns if t.points_earned}
    by_kind: Counter[str] = Counter()
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
    assert by_kind["restore"] == result.points_restored
    assert -by_kind["expire"] == result.points_expired > 0  # points earned over a year ago
    assert result.points_issued == result.points_earned + result.points_bonus
    expired = db.read(lambda s: s.scalars(select(LedgerEntry.created_at).where(LedgerEntry.kind == "expire")).all())
    zone = ZoneInfo(demo.TIMEZONE)
    # Expired by the nightly runs, at midnight where the programme is, or by the demo's run as of now.
    assert all(t == NOW or t.astimezone(zone).time() == time(0, 0) for t in expired)
    lots = db.read(lambda s: s.scalars(select(PointLot)).all())
    assert all(lot.remaining == 0 for lot in lots if lot.expires_at is not None and lot.expires_at <= NOW)
    assert all(lot.pending == (lot.available_at > NOW) for lot in lots if lot.remaining)

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
    assert len(upgrades) == result.tier_changes
    assert upgrades and all(c.reason == "purchase" and c.changed_at < NOW for c in upgrades)
    assert_tiers_consistent(db)


def assert_tiers_consistent(db: Database) -> None:
    """Each member is on the tier of their last upgrade (or the first), which their spend at the
    time reached; and never below what their spend over the last year reaches now (upgrades are
    immediate, downgrades wait for requalification)."""

    def read(s):  # type: ignore[no-untyped-def]
        program = program_service.get(s)
        ladder = tiers.ladder(s)
        members = s.execute(select(Member.id, Member.tier_code)).all()
        spend = tiers.metric_values(s, [m for m, _ in members])
        changes = s.scalars(select(TierChange).order_by(TierChange.id)).all()
        return program, ladder, members, spend, changes

    with clock.frozen(NOW):
        program, ladder, members, spend, changes = db.read(read)
    position = {t.code: t.position for t in ladder}
    threshold = {t.code: t.threshold * 100 for t in ladder}
    last: dict[object, str] = {}
    for c in changes:
        assert position[c.to_code] > position[c.from_code]
        assert c.metric_value >= threshold[c.to_code]
        last[c.member_id] = c.to_code
    for member_id, tier in members:
        assert tier == last.get(member_id, ladder[0].code)
        assert position[tier] >= tiers.tier_for(program, ladder, spend[member_id]).position


def test_patron_demo_members_300(db, db_url):
    """The command a newcomer runs: members with cards and a history, tiers that follow the ladder,
    and a ledger that proves itself."""
    from patron.cli import app

    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    with clock.frozen(NOW):
        out = CliRunner().invoke(app, ["demo", "--members", "300", "--seed", "1"], env=env)
    assert out.exit_code == 0, out.output
    assert "History of 300 members:" in out.stdout
    assert count(db, Member) == 300
    holders = db.read(lambda s: set(s.scalars(select(Card.member_id).where(Card.kind == "loyalty"))))
    assert len(holders) >= 240
    with_history = db.read(lambda s: set(s.scalars(select(LedgerEntry.member_id).distinct())))
    buyers = db.read(lambda s: set(s.scalars(select(Transaction.member_id).distinct())))
    assert len(with_history) == 300 and len(buyers) >= 270
    entries = count(db, LedgerEntry)
    assert 7 * 300 <= entries <= 14 * 300  # about ten a member
    assert count(db, Transaction) >= 4 * 300
    assert_tiers_consistent(db)
    assert db.read(verify) == (300, [])
    verified = CliRunner().invoke(app, ["ledger", "verify"], env=env)
    assert verified.exit_code == 0, verified.output
    assert "Ledger verified: 300 accounts" in verified.stdout


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


def test_chunks_and_worker_processes_change_nothing(db, sqlite_template: Path, tmp_path: Path):
    """Histories generated in a worker process, seven members a chunk, are the ones generated here
    in one chunk."""
    path = tmp_path / "one-chunk.db"
    shutil.copyfile(sqlite_template, path)
    other = Database(settings_for(f"sqlite:///{path}"))
    progress: list[int] = []
    try:
        with clock.frozen(NOW):
            chunked = demo.run(
                db, SYSTEM, count=30, seed=2, secret=SECRET, batch_size=7, processes=1, on_progress=progress.append
            )
            whole = demo.run(other, SYSTEM, count=30, seed=2, secret=SECRET, processes=0)
        assert progress == [7, 7, 7, 7, 2]
        keys = ("admin_key", "cashier_key")
        assert {k: v for k, v in asdict(chunked).items() if k not in keys} == {
            k: v for k, v in asdict(whole).items() if k not in keys
        }
        assert summary(db) == summary(other)
        ids = db.read(lambda s: sorted(s.scalars(select(LedgerEntry.id))))
        assert ids == other.read(lambda s: sorted(s.scalars(select(LedgerEntry.id))))  # ids follow from the seed
        assert db.read(verify) == (30, [])
    finally:
        other.dispose()


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


# --- The bulk history against the services ---------------------------------------------------


def _random_rule(rng: random.Random, n: int) -> engine.Rule:
    skus = sorted(history.CATALOGUE)
    categories = sorted({p.category for p in history.CATALOGUE.values()})
    kind = rng.choice(("spend", "category", "sku", "sku-amount", "multiplier", "multiplier", "visit"))
    cap = rng.choice((None, None, None, 5, 40))
    conditions = engine.Conditions(
        min_total=rng.choice((None, None, 100_000, 500_000)),
        tiers=frozenset(rng.choice(((), (), ("gold",), ("silver", "gold")))),
        locations=frozenset(rng.choice(((), (), ("MSK-01",)))),
        weekdays=frozenset(rng.choice(((), (), (6, 7)))),
    )
    common: dict[str, Any] = {"id": uuid.UUID(int=n), "name": f"rule {n}", "max_points": cap, "conditions": conditions}
    if kind == "spend":
        return engine.Rule(kind="spend", points=rng.choice((1, 2)), per_amount=rng.choice((10_000, 5_000)), **common)
    if kind == "category":
        cats = frozenset(rng.sample(categories, rng.randint(1, 2)))
        return engine.Rule(kind="category", points=1, per_amount=10_000, categories=cats, **common)
    if kind in ("sku", "sku-amount"):
        chosen = frozenset(rng.sample(skus, rng.randint(1, 3)))
        per = 10_000 if kind == "sku-amount" else None
        return engine.Rule(kind="sku", points=rng.choice((5, 100)), per_amount=per, skus=chosen, **common)
    if kind == "multiplier":
        factor = Decimal(rng.choice(("0.5", "1.5", "2", "3", "1.25")))
        restricted = rng.random() < 0.6
        cats = frozenset(rng.sample(categories, 1)) if restricted else frozenset()
        return engine.Rule(kind="multiplier", factor=factor, categories=cats, **common)
    return engine.Rule(kind="visit", points=20, **common)


def test_the_compiled_earner_is_the_rules_engine():
    """Random baskets of the demo's catalogue, random rule sets (caps, conditions, multipliers
    above and below one, restricted or not), every tier: the same points and the same breakdown."""
    rng = random.Random(5)
    zone = ZoneInfo(demo.TIMEZONE)
    members = [
        engine.MemberContext("bronze", "Bronze", Decimal(1)),
        engine.MemberContext("silver", "Silver", Decimal("1.25")),
        engine.MemberContext("gold", "Gold", Decimal("1.5")),
    ]
    demo_rules = [
        engine.Rule(
            id=uuid.UUID(int=100 + i),
            name=r["name"],
            kind=r["kind"],
            points=r.get("points", 0),
            per_amount=int(r["per_amount"]) * 100 if "per_amount" in r else None,
            skus=frozenset(r.get("sku", ())),
            categories=frozenset([r["category"]] if "category" in r else ()),
            factor=Decimal(r["factor"]) if "factor" in r else None,
            conditions=engine.Conditions(min_total=int(r["conditions"]["min_total"]) * 100)
            if "conditions" in r
            else engine.Conditions(),
        )
        for i, r in enumerate(demo.EARNING_RULES)
        if r["kind"] in transactions.PURCHASE_RULE_KINDS
    ]
    rule_sets = [demo_rules] + [[_random_rule(rng, n * 10 + k) for k in range(rng.randint(1, 6))] for n in range(60)]
    compared = 0
    for rules in rule_sets:
        earner = history.Earner(rules, zone)
        for _ in range(60):
            reason = rng.choice([r for r, _ in history.VISITS])
            lines = history._basket(rng, reason, rng.randint(1, 12), rng.choice((0.75, 1.0, 1.8)))
            totals = [q * price * 100 for _, q, price in lines]
            paid = rng.choice((0, 0, sum(totals) // 3, sum(totals)))
            nets = [t - s for t, s in zip(totals, engine.spread(paid, totals), strict=True)]
            at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 14))
            location = rng.choice(("MSK-01", "SPB-01"))
            member = rng.choice(members)
            basket = engine.Basket(
                total=sum(totals),
                amount_due=sum(totals) - paid,
                lines=tuple(
                    engine.Line(sku, history.CATALOGUE[sku].category, Decimal(q), t, n)
                    for (sku, q, _), t, n in zip(lines, totals, nets, strict=True)
                ),
                occurred_at=at,
                channel="pos",
                location=location,
            )
            expected = engine.earn(basket, rules, member, zone)
            got = earner.earn(
                [(sku, history.CATALOGUE[sku].category, q, n) for (sku, q, _), n in zip(lines, nets, strict=True)],
                sum(totals),
                sum(totals) - paid,
                member,
                int(at.timestamp()),
                "pos",
                location,
            )
            assert got == (expected.points, [(c.rule_id, c.rule_name, c.points) for c in expected.breakdown])
            compared += bool(expected.points)
    assert compared > 1000


def _replay(db: Database, count: int, seed: int) -> None:
    """What the bulk demo writes, posted instead through the services with the clock at each step:
    the same members, the same steps in time order across members, the same choices to pay with
    points (from the same generator, on the balance the services report), and release-pending and
    expire-points run by the jobs at every local midnight, as a worker would."""
    actor = SYSTEM
    with clock.frozen(NOW):

        def configure(s):  # type: ignore[no-untyped-def]
            demo._configure_programme(s, actor)
            return history.Programme.read(s)

        programme = db.write(configure)
    p = demo.plan(count, seed, NOW, "7800")
    params = demo.history_params(p, actor)
    members = list(demo.members_of(p))
    subjects = [demo.subject(params, i, m) for i, m in enumerate(members)]
    with clock.frozen(NOW):
        db.write(lambda s: insert_members(s, members, rules_version="1", base_tier="bronze"))
    calendar = history.Calendar.of(programme.timezone, params)
    timeline = []
    rngs = {}
    locations = {}
    for subject in subjects:
        rng = history.history_rng(subject, seed)
        locations[subject.ordinal], steps = history.steps_of(subject, params, calendar, rng)
        rngs[subject.ordinal] = rng
        timeline += [(step.posted, subject.ordinal, n, step) for n, step in enumerate(steps)]
    timeline.sort()
    bought: dict[tuple[int, int], uuid.UUID] = {}

    def at(t: int) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    def nightly(after: int, until: int) -> None:
        for midnight in calendar.midnights:
            if after < midnight <= until:
                with clock.frozen(at(midnight)):
                    jobs.run(db, "release-pending", at(midnight))
                    jobs.run(db, "expire-points", at(midnight))

    last = subjects[0].enrolled_at
    for posted, ordinal, _, step in timeline:
        nightly(last, posted)
        last = posted
        subject = subjects[ordinal]
        member_id = uuid.UUID(subject.id)
        ref = f"demo-{subject.number}-{step.visit:03d}"

        def act(s, subject=subject, member_id=member_id, ref=ref, step=step):  # type: ignore[no-untyped-def]
            if step.kind == history.WELCOME:
                member = s.get(Member, member_id)
                account = ledger.lock_account(s, member_id)
                when = engine.Occasion(at=at(step.at), channel=subject.channel, location=subject.location)
                bonuses.award(s, member, account, "welcome", when, actor)
            elif step.kind == history.PURCHASE:
                account = ledger.get_account(s, member_id)
                matured = sum(
                    lot.remaining
                    for lot in s.scalars(select(PointLot).where(PointLot.member_id == member_id, PointLot.pending))
                    if lot.available_at <= at(step.posted)
                )
                spendable = account.available + matured if account.pending else account.available
                total = sum(q * price for _, q, price in step.lines) * 100
                redeem = 0
                if spendable >= history.REDEEM_FROM and rngs[subject.ordinal].random() < history.REDEEM_SHARE:
                    redeem = min(spendable, total // 2 // programme.point_value) // 50 * 50
                items = [
                    ItemIn(
                        sku=sku,
                        name=history.CATALOGUE[sku].name,
                        category=history.CATALOGUE[sku].category,
                        quantity=Decimal(q),
                        unit_price=Decimal(price),
                    )
                    for sku, q, price in step.lines
                ]
                out = transactions.post(
                    s,
                    actor,
                    TransactionIn(
                        external_id=ref,
                        member_id=member_id,
                        occurred_at=at(step.at),
                        location=locations[subject.ordinal],
                        channel="pos",
                        items=items,
                        redeem_points=redeem,
                    ),
                    SECRET,
                )
                bought[subject.ordinal, step.visit] = out.id
            elif step.kind == history.RETURN:
                sku, q, _ = step.lines[0]
                body = ReturnIn(external_id=f"{ref}-return", items=[ReturnItemIn(sku=sku, quantity=Decimal(q))])
                transactions.process_return(s, actor, bought[subject.ordinal, step.visit], body)
            elif step.kind == history.REFUND:
                txn = transactions.get(s, bought[subject.ordinal, step.visit])
                amount = min(step.refund * 100, txn.amount_due_minor)
                if amount > 0:
                    body = ReturnIn(external_id=f"{ref}-refund", amount=Decimal(amount) / 100)
                    transactions.process_return(s, actor, txn.id, body)
            else:
                event = EventIn(
                    external_id=f"{ref}-survey", member_id=member_id, type="survey_answered", occurred_at=at(step.at)
                )
                events.record(s, actor, event)

        with clock.frozen(at(posted)):
            db.write(act)
    nightly(last, int(NOW.timestamp()))
    with clock.frozen(NOW):
        jobs.run(db, "release-pending", NOW)
        jobs.run(db, "expire-points", NOW)


def _everything(db: Database) -> dict[str, Any]:
    """Every history row of every member, ids replaced by their place in the member's history."""

    def read(s):  # type: ignore[no-untyped-def]
        number = dict(s.execute(select(Member.id, Member.number)).all())
        rule = dict(s.execute(select(EarningRule.id, EarningRule.name)).all())
        rule_names = {str(i): name for i, name in rule.items()}
        txns = {t.id: t for t in s.scalars(select(Transaction))}
        ref = {i: t.external_id for i, t in txns.items()}
        entries = s.scalars(select(LedgerEntry).order_by(LedgerEntry.member_id, LedgerEntry.id)).all()
        lots = s.scalars(select(PointLot).order_by(PointLot.member_id, PointLot.id)).all()
        place = {}
        for kind, rows in (("entry", entries), ("lot", lots)):
            seen: Counter[uuid.UUID] = Counter()
            for row in rows:
                place[row.id] = (kind, number[row.member_id], seen[row.member_id])
                seen[row.member_id] += 1

        def answer(t: Transaction) -> dict[str, Any]:
            breakdown = [{**c, "rule_id": rule_names.get(c["rule_id"])} for c in t.answer["breakdown"]]
            return {**t.answer, "id": ref[t.id], "member_id": number[t.member_id], "breakdown": breakdown}

        return {
            "accounts": sorted(
                (number[a.member_id], a.available, a.pending, a.lifetime_earned, a.redeemed, a.expired, a.updated_at)
                for a in s.scalars(select(PointAccount))
            ),
            "tiers": sorted(s.execute(select(Member.number, Member.tier_code)).all()),
            "entries": [
                (
                    place[e.id],
                    e.kind,
                    e.points,
                    e.balance_after,
                    e.created_at,
                    ref.get(e.transaction_id),
                    rule.get(e.rule_id),
                    e.reason,
                    e.expires_at,
                    e.actor_kind,
                    e.actor_id,
                )
                for e in entries
            ],
            "lots": [
                (
                    place[lot.id],
                    place[lot.entry_id],
                    ref.get(lot.transaction_id),
                    lot.points,
                    lot.remaining,
                    lot.pending,
                    lot.available_at,
                    lot.expires_at,
                    lot.created_at,
                )
                for lot in lots
            ],
            "allocations": sorted(
                (place[a.entry_id], place[a.lot_id], a.points) for a in s.scalars(select(LotAllocation))
            ),
            "transactions": sorted(
                (
                    t.external_id,
                    number[t.member_id],
                    t.occurred_at,
                    t.location,
                    t.channel,
                    t.currency,
                    t.total_minor,
                    t.discount_minor,
                    t.points_redeemed,
                    t.points_value_minor,
                    t.amount_due_minor,
                    t.points_earned,
                    t.returned_amount_minor,
                    t.returned_net_minor,
                    t.points_reversed,
                    t.points_restored,
                    str(sorted(answer(t).items())),
                    t.actor_kind,
                    t.actor_id,
                    t.created_at,
                )
                for t in txns.values()
            ),
            "lines": sorted(
                (ref[x.transaction_id], x.position, x.sku, x.name, x.category, x.quantity)
                + (x.unit_price_minor, x.total_minor, x.net_minor, x.returned_quantity)
                for x in s.scalars(select(TransactionLine))
            ),
            "returns": sorted(
                (ref[r.transaction_id], r.external_id, r.amount_minor, str(r.items), r.points_reversed)
                + (r.points_restored, r.created_at)
                for r in s.scalars(select(TransactionReturn))
            ),
            "tier_changes": sorted(
                (number[c.member_id], c.changed_at, c.from_code, c.to_code, c.reason, c.metric_value)
                for c in s.scalars(select(TierChange))
            ),
        }

    return db.read(read)


def test_the_bulk_history_is_what_the_services_write(db, sqlite_template: Path, tmp_path: Path):
    """The demo's bulk history (on either database) row for row against the same history posted
    through the services and the real jobs (on SQLite): balances, entries, lots and what they
    have left, allocations, purchases with their lines and answers, returns, tier upgrades."""
    path = tmp_path / "services.db"
    shutil.copyfile(sqlite_template, path)
    services = Database(settings_for(f"sqlite:///{path}"))
    try:
        with clock.frozen(NOW):
            result = demo.run(db, SYSTEM, count=14, seed=8, secret=SECRET)
        _replay(services, count=14, seed=8)
        bulk, posted = _everything(db), _everything(services)
        for table in bulk:
            assert bulk[table] == posted[table], table
        assert len(posted["transactions"]) == result.purchases > 50
        kinds = Counter(e[1] for e in posted["entries"])
        assert kinds["redeem"] and kinds["reverse"] and kinds["restore"] and kinds["expire"]
        assert sum(1 for r in posted["returns"] if r[2] is not None) == 2  # refunds of an amount
        assert posted["tier_changes"]
        assert services.read(verify) == (14, [])
    finally:
        services.dispose()
