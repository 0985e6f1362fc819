"""The points ledger against a small model in Python, on SQLite and PostgreSQL.

A Hypothesis state machine drives the real services (purchases, returns, bonuses, redemptions,
adjustments, the release-pending and expire-points jobs) while the clock moves, and keeps a model
of the member's lots beside them. After every step the database must say exactly what the model
says: the balance, its counters and what is left in every lot. So spending takes the soonest-expiring
points first, expiry takes only what remains, a debt is paid from the next points, and a refused
operation changes nothing.
"""

from __future__ import annotations

import copy
import itertools
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.access.principal import SYSTEM
from patron.db import Database
from patron.errors import InsufficientPoints, PatronError, ValidationFailed
from patron.jobs import points as jobs
from patron.kit import clock
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry, LotAllocation, PointAccount, PointLot
from patron.ledger.schemas import AdjustmentIn, RedemptionIn
from patron.ledger.verify import verify
from patron.members import service as members
from patron.members.schemas import ConsentsIn, MemberCreate
from patron.program import service as program_service
from patron.rules import service as rules
from patron.rules.models import EarningRule
from patron.rules.schemas import RuleIn
from patron.transactions import service as transactions
from patron.transactions.models import Transaction
from patron.transactions.schemas import ItemIn, ReturnIn, ReturnItemIn, TransactionIn
from tests.conftest import TEST_SECRET

SECRET = TEST_SECRET.encode()
T0 = datetime(2031, 12, 1, 9, 0, tzinfo=UTC)  # a month before a year end, for end_of_year expiry
EARLIEST = datetime.min.replace(tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")  # the programme's time zone
_seq = itertools.count()

# The programme's expiry: none, a number of days after the purchase, or the end of its year.
Expiry = int | str | None


def expiry_for(expiry: Expiry, earned_at: datetime) -> datetime | None:
    if expiry is None:
        return None
    if expiry == "end_of_year":
        return datetime(earned_at.astimezone(MOSCOW).year + 1, 1, 1, tzinfo=MOSCOW)
    assert isinstance(expiry, int)
    return earned_at + timedelta(days=expiry)


def half_up(value: Fraction) -> int:
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


# The model -------------------------------------------------------------------------------------------


@dataclass
class Lot:
    id: uuid.UUID
    txn: uuid.UUID | None
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None


def spend_key(lot: Lot) -> tuple[bool, datetime, uuid.UUID]:
    """Soonest expiry first, never-expiring last, then oldest (ids are time-ordered)."""
    return (lot.expires_at is None, lot.expires_at or EARLIEST, lot.id)


@dataclass
class Purchase:
    id: uuid.UUID
    quantity: int
    net: int  # amount_due, whole roubles
    earned: int
    redeemed: int
    taken: dict[uuid.UUID, int]  # what its points payment took from each lot
    returned_quantity: int = 0
    returned_amount: int = 0
    reversed: int = 0
    restored: int = 0
    given_back: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))

    def share(self, quantity: int, amount: int) -> Fraction:
        """The share returned; by items and amounts over the net, or by items alone if nothing was paid."""
        by_items = Fraction(quantity, self.quantity)
        return (by_items * self.net + amount) / self.net if self.net > 0 else by_items


@dataclass
class Model:
    now: datetime
    available: int = 0
    pending: int = 0
    lifetime_earned: int = 0
    redeemed: int = 0
    expired: int = 0
    lots: dict[uuid.UUID, Lot] = field(default_factory=dict)

    def spendable(self) -> list[Lot]:
        return sorted((lot for lot in self.lots.values() if not lot.pending and lot.remaining > 0), key=spend_key)

    @staticmethod
    def _take(lots: list[Lot], points: int) -> dict[uuid.UUID, int]:
        taken: dict[uuid.UUID, int] = {}
        for lot in lots:
            part = min(lot.remaining, points - sum(taken.values()))
            if part > 0:
                lot.remaining -= part
                taken[lot.id] = part
        return taken

    def _settle_debt(self) -> None:
        """Points that become spendable while the balance is negative pay the debt first, taken
        like any spending: soonest-expiring first."""
        excess = sum(lot.remaining for lot in self.spendable()) - max(self.available, 0)
        if excess > 0:
            self._take(self.spendable(), excess)

    def credit(self, kind: str, lot: Lot, points: int) -> None:
        lot.pending = lot.available_at > self.now
        if lot.pending:
            self.pending += points
        else:
            self.available += points
        if kind in ("earn", "bonus"):
            self.lifetime_earned += points
        self.lots[lot.id] = lot
        self._settle_debt()

    def debit(self, kind: str, points: int) -> dict[uuid.UUID, int]:
        assert self.available >= points
        self.available -= points
        if kind == "redeem":
            self.redeemed += points
        taken = self._take(self.spendable(), points)
        assert sum(taken.values()) == points
        return taken

    def release(self, as_of: datetime) -> None:
        for lot in self.lots.values():
            if lot.pending and lot.available_at <= as_of:
                lot.pending = False
                self.pending -= lot.remaining
                self.available += lot.remaining
        self._settle_debt()

    def expire(self, as_of: datetime) -> None:
        for lot in self.lots.values():
            if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= as_of:
                if lot.pending:
                    self.pending -= lot.remaining
                else:
                    self.available -= lot.remaining
                self.expired += lot.remaining
                lot.remaining = 0

    def reverse(self, purchase: Purchase, points: int) -> None:
        """Take back what a purchase earned: from its own lot first (pending before spendable),
        then from the other spendable points; what was spent already becomes a debt."""
        own = sorted(
            (lot for lot in self.lots.values() if lot.txn == purchase.id and lot.remaining > 0),
            key=lambda lot: (not lot.pending, lot.id),
        )
        left = points
        from_pending = 0
        for lot in own:
            part = min(lot.remaining, left)
            lot.remaining -= part
            left -= part
            if lot.pending:
                from_pending += part
        self._take(self.spendable(), left)
        self.pending -= from_pending
        self.available -= points - from_pending
        self.lifetime_earned -= points

    def restore(self, purchase: Purchase, points: int) -> None:
        """Give redeemed points back to the lots they came from, latest-expiring first."""
        self.available += points
        self.redeemed -= points
        lots = sorted((self.lots[i] for i in purchase.taken), key=lambda lot: (lot.expires_at or EARLIEST, lot.id))
        lots = sorted(reversed(lots), key=lambda lot: lot.expires_at is not None)  # never-expiring first
        left = points
        for lot in lots:
            part = min(purchase.taken[lot.id] - purchase.given_back[lot.id], left)
            if part > 0:
                lot.remaining += part
                purchase.given_back[lot.id] += part
                left -= part
        assert left == 0
        self._settle_debt()

    def check(self) -> None:
        assert all(lot.remaining >= 0 for lot in self.lots.values())
        assert sum(lot.remaining for lot in self.lots.values() if lot.pending) == self.pending
        assert sum(lot.remaining for lot in self.spendable()) == max(self.available, 0)


# Reading the database --------------------------------------------------------------------------------


def lot_state(lot: Lot | PointLot) -> tuple[int, bool]:
    """What is left in a lot, and whether that is pending. An empty lot's pending flag means
    nothing (releasing skips a member with nothing pending), so it is not compared."""
    return lot.remaining, lot.pending and lot.remaining > 0


def snapshot(db: Database, member_id: uuid.UUID) -> Any:
    """Everything of one member's points, to prove that a refusal changed nothing."""

    def read(s: Session) -> Any:
        account = s.get(PointAccount, member_id)
        assert account is not None
        entries = s.scalars(select(LedgerEntry).where(LedgerEntry.member_id == member_id)).all()
        lots = s.scalars(select(PointLot).where(PointLot.member_id == member_id)).all()
        allocations = s.execute(
            select(LotAllocation.entry_id, LotAllocation.lot_id, LotAllocation.points)
            .join(LedgerEntry, LedgerEntry.id == LotAllocation.entry_id)
            .where(LedgerEntry.member_id == member_id)
        ).all()
        txns = s.scalars(select(Transaction).where(Transaction.member_id == member_id)).all()
        return (
            (account.available, account.pending, account.lifetime_earned, account.redeemed, account.expired),
            sorted((e.id, e.kind, e.points) for e in entries),
            sorted((lot.id, lot.remaining, lot.pending) for lot in lots),
            sorted(tuple(a) for a in allocations),
            sorted((t.id, t.returned_amount_minor, t.points_reversed, t.points_restored) for t in txns),
        )

    return db.read(read)


def new_member(session: Session) -> uuid.UUID:
    n = next(_seq)
    data = MemberCreate(
        first_name="Model",
        last_name=f"Member{n}",
        email=f"model{n}-{uuid.uuid4().hex[:8]}@example.com",
        consents=ConsentsIn(program_rules=True),
    )
    return members.enrol(session, SYSTEM, data, welcome=False).id


def set_programme(session: Session, *, pending_days: int, expiry: Expiry) -> None:
    program = program_service.get(session)
    program.pending_days = pending_days
    program.expiry_policy = "none" if expiry is None else ("end_of_year" if expiry == "end_of_year" else "after_days")
    program.expiry_days = expiry if isinstance(expiry, int) else None


def only_rules(session: Session, *given: RuleIn) -> None:
    """Switch off the rules of earlier examples (the database outlives them) and add these."""
    session.execute(update(EarningRule).values(active=False))
    program_service.bump_config(session)  # processes cache the rules by the config version
    for data in given:
        rules.create(session, SYSTEM, data)


# Shares of the spendable balance that redemptions take; more than all of it is refused.
PARTS = [Fraction(1, 3), Fraction(1), Fraction(1), Fraction(3, 2)]
ONE_PER_ROUBLE = RuleIn(name="1 per rouble", kind="spend", points=1, per_amount=Decimal("1.00"))


# The state machine --------------------------------------------------------------------------------


def ledger_machine(db: Database) -> type[RuleBasedStateMachine]:
    db.write(lambda s: only_rules(s, ONE_PER_ROUBLE))

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model = Model(now=T0)
            self.expiry: Expiry = None  # the programme's, as the last purchase set it
            self.purchases: list[Purchase] = []

            def setup(s: Session) -> uuid.UUID:
                set_programme(s, pending_days=0, expiry=None)
                return new_member(s)

            with clock.frozen(T0):
                self.member_id = db.write(setup)

        def attempt(self, work: Any, refusal: type[PatronError] | None) -> Any:
            """Run `work` at the model's time; a refusal must be the one expected and change nothing."""
            before = snapshot(db, self.member_id)
            refused: PatronError | None = None
            with clock.frozen(self.model.now):
                try:
                    result = db.write(work)
                except PatronError as exc:
                    refused = exc
            if refused is None:
                assert refusal is None, f"expected {refusal.__name__}"
                return result
            assert refusal is not None and isinstance(refused, refusal), f"unexpected {refused!r}"
            assert snapshot(db, self.member_id) == before
            return None

        def released(self) -> Model:
            """The model as a request would see it: matured points released first. A refused
            request rolls that back too, so this is a copy."""
            m = copy.deepcopy(self.model)
            m.release(m.now)
            return m

        def part_of_balance(self, part: Fraction) -> int:
            """A share of what a request could spend now, at least one point; more than all of it
            for a part above one, so that some requests are refused."""
            return max(1, math.ceil(max(self.released().available, 0) * part))

        @initialize(opening=st.integers(0, 300))
        def open_account(self, opening: int) -> None:
            if opening:
                self.adjust_up(opening)

        @rule(hours=st.sampled_from([1, 20, 48, 24 * 4, 24 * 9]))
        def advance(self, hours: int) -> None:
            self.model.now += timedelta(hours=hours)

        @rule(
            quantity=st.integers(1, 3),
            unit_price=st.integers(1, 90),
            redeem_part=st.sampled_from([None, None, *PARTS]),
            pending_days=st.sampled_from([0, 0, 2, 5]),
            expiry=st.sampled_from([None, 3, 20, "end_of_year"]),
            days_ago=st.sampled_from([0, 0, 1, 4]),
        )
        def purchase(
            self,
            quantity: int,
            unit_price: int,
            redeem_part: Fraction | None,
            pending_days: int,
            expiry: Expiry,
            days_ago: int,
        ) -> None:
            m = self.model
            total = quantity * unit_price
            redeem = 0 if redeem_part is None else self.part_of_balance(redeem_part)
            occurred_at = m.now - timedelta(days=days_ago)
            data = TransactionIn(
                external_id=f"p{next(_seq)}",
                member_id=self.member_id,
                occurred_at=occurred_at,
                items=[ItemIn(sku="A", quantity=Decimal(quantity), unit_price=Decimal(unit_price))],
                redeem_points=redeem,
            )
            refusal: type[PatronError] | None = None
            if redeem > 0 and redeem > self.released().available:
                refusal = InsufficientPoints
            elif redeem > total:
                refusal = ValidationFailed

            def work(s: Session) -> tuple[Any, uuid.UUID | None]:
                set_programme(s, pending_days=pending_days, expiry=expiry)
                answer = transactions.post(s, SYSTEM, data, SECRET)
                lot = s.scalar(select(PointLot.id).where(PointLot.transaction_id == answer.id))
                return answer, lot

            done = self.attempt(work, refusal)
            if done is None:
                return
            answer, lot_id = done
            self.expiry = expiry
            net = total - redeem
            assert (answer.points_redeemed, answer.points_earned) == (redeem, net)
            m.release(m.now)
            taken = m.debit("redeem", redeem) if redeem else {}
            if net:
                assert lot_id is not None
                lot = Lot(
                    lot_id,
                    answer.id,
                    net,
                    False,
                    occurred_at + timedelta(days=pending_days),
                    expiry_for(expiry, occurred_at),
                )
                m.credit("earn", lot, net)
            self.purchases.append(Purchase(answer.id, quantity, net, net, redeem, taken))
            assert (answer.balance.available, answer.balance.pending) == (m.available, m.pending)

        @rule(
            points=st.integers(1, 80),
            hold_days=st.sampled_from([0, 0, 3]),
            expires_in=st.sampled_from([None, 2, 15]),
        )
        def bonus(self, points: int, hold_days: int, expires_in: int | None) -> None:
            m = self.model
            available_at = m.now + timedelta(days=hold_days)
            expires_at = None if expires_in is None else m.now + timedelta(days=expires_in)

            def work(s: Session) -> uuid.UUID:
                account = ledger.lock_account(s, self.member_id)
                src = ledger.Source(actor=SYSTEM, reason="model bonus")
                entry = ledger.credit(
                    s, account, "bonus", points, src, available_at=available_at, expires_at=expires_at
                )
                return s.scalars(select(PointLot.id).where(PointLot.entry_id == entry.id)).one()

            lot_id = self.attempt(work, None)
            m.credit("bonus", Lot(lot_id, None, points, False, available_at, expires_at), points)

        @rule(part=st.sampled_from(PARTS))
        def redeem(self, part: Fraction) -> None:
            points = self.part_of_balance(part)
            refusal = InsufficientPoints if self.released().available < points else None
            data = RedemptionIn(external_id=f"r{next(_seq)}", points=points)
            if self.attempt(lambda s: ledger.redeem(s, SYSTEM, self.member_id, data), refusal) is None:
                return
            self.model.release(self.model.now)
            self.model.debit("redeem", points)

        @rule(points=st.integers(1, 160))
        def adjust_up(self, points: int) -> None:
            self._adjust(points)

        @rule(part=st.sampled_from(PARTS))
        def adjust_down(self, part: Fraction) -> None:
            self._adjust(-self.part_of_balance(part))

        def _adjust(self, points: int) -> None:
            refusal = InsufficientPoints if points < 0 and self.released().available < -points else None
            data = AdjustmentIn(external_id=f"a{next(_seq)}", points=points, reason="model adjustment")
            entry = self.attempt(lambda s: ledger.adjust(s, SYSTEM, self.member_id, data), refusal)
            if entry is None:
                return
            m = self.model
            m.release(m.now)
            if points < 0:
                m.debit("adjust", -points)
                return
            lot_id = db.read(lambda s: s.scalars(select(PointLot.id).where(PointLot.entry_id == entry.id)).one())
            m.credit("adjust", Lot(lot_id, None, points, False, m.now, expiry_for(self.expiry, m.now)), points)

        @precondition(lambda self: self.purchases)
        @rule(pick=st.integers(0, 1000), quantity=st.integers(1, 3))
        def return_items(self, pick: int, quantity: int) -> None:
            p = self.purchases[pick % len(self.purchases)]
            returned = p.returned_quantity + quantity
            fits = returned <= p.quantity and p.share(returned, p.returned_amount) <= 1
            data = ReturnIn(external_id=f"x{next(_seq)}", items=[ReturnItemIn(sku="A", quantity=Decimal(quantity))])
            self._return(p, data, returned, p.returned_amount, fits)

        @precondition(lambda self: any(p.returned_quantity < p.quantity for p in self.purchases))
        @rule(pick=st.integers(0, 1000))
        def return_the_rest(self, pick: int) -> None:
            """Everything not yet returned of a purchase, most often after its points were spent."""
            open_purchases = [p for p in self.purchases if p.returned_quantity < p.quantity]
            p = open_purchases[pick % len(open_purchases)]
            self.return_items(self.purchases.index(p), p.quantity - p.returned_quantity)

        @precondition(lambda self: any(p.returned_quantity < p.quantity and p.earned for p in self.purchases))
        @rule(pick=st.integers(0, 1000))
        def spend_everything_then_return(self, pick: int) -> None:
            """The way into debt: the points a purchase earned are spent, then the goods come back."""
            open_purchases = [p for p in self.purchases if p.returned_quantity < p.quantity and p.earned]
            p = open_purchases[pick % len(open_purchases)]
            self.redeem(Fraction(1))
            self.return_items(self.purchases.index(p), p.quantity - p.returned_quantity)

        @precondition(lambda self: self.purchases)
        @rule(pick=st.integers(0, 1000), amount=st.integers(1, 200))
        def return_amount(self, pick: int, amount: int) -> None:
            p = self.purchases[pick % len(self.purchases)]
            returned = p.returned_amount + amount
            fits = p.net > 0 and p.share(p.returned_quantity, returned) <= 1
            data = ReturnIn(external_id=f"x{next(_seq)}", amount=Decimal(amount))
            self._return(p, data, p.returned_quantity, returned, fits)

        def _return(self, p: Purchase, data: ReturnIn, quantity: int, amount: int, fits: bool) -> None:
            m = self.model
            work = lambda s: transactions.process_return(s, SYSTEM, p.id, data)  # noqa: E731
            answer = self.attempt(work, None if fits else ValidationFailed)
            if answer is None:
                return
            share = p.share(quantity, amount)
            to_reverse = max(min(half_up(p.earned * share), p.earned) - p.reversed, 0)
            to_restore = max(min(half_up(p.redeemed * share), p.redeemed) - p.restored, 0)
            assert (answer.points_reversed, answer.points_restored) == (to_reverse, to_restore)
            p.returned_quantity, p.returned_amount = quantity, amount
            p.reversed += to_reverse
            p.restored += to_restore
            if to_reverse:
                m.reverse(p, to_reverse)
            if to_restore:
                m.restore(p, to_restore)
            assert (answer.balance.available, answer.balance.pending) == (m.available, m.pending)

        # The daily jobs run a while after the last request, so time moves with them.
        @rule(days=st.sampled_from([0, 1, 3, 10]))
        def release_pending_job(self, days: int) -> None:
            self.model.now += timedelta(days=days)
            with clock.frozen(self.model.now):
                jobs.release_pending(db, self.model.now)
            self.model.release(self.model.now)

        @rule(days=st.sampled_from([0, 1, 3, 10]))
        def expire_points_job(self, days: int) -> None:
            self.model.now += timedelta(days=days)
            with clock.frozen(self.model.now):
                jobs.expire_points(db, self.model.now)
            self.model.expire(self.model.now)

        @invariant()
        def database_matches_model(self) -> None:
            m = self.model
            m.check()

            def read(s: Session) -> Any:
                account = s.get(PointAccount, self.member_id)
                assert account is not None
                entries = s.execute(
                    select(LedgerEntry.points, LedgerEntry.balance_after)
                    .where(LedgerEntry.member_id == self.member_id)
                    .order_by(LedgerEntry.id)  # time-ordered ids: the order they were written in
                ).all()
                lots = s.scalars(select(PointLot).where(PointLot.member_id == self.member_id)).all()
                return account, entries, {lot.id: lot_state(lot) for lot in lots}, verify(s)[1]

            account, entries, lots, mismatches = db.read(read)
            running = list(itertools.accumulate(points for points, _ in entries))
            assert [after for _, after in entries] == running  # every entry says the balance it left
            total = running[-1] if running else 0
            assert (account.available, account.pending) == (m.available, m.pending)
            assert (account.lifetime_earned, account.redeemed, account.expired) == (
                m.lifetime_earned,
                m.redeemed,
                m.expired,
            )
            assert account.available + account.pending == total
            assert lots == {lot.id: lot_state(lot) for lot in m.lots.values()}
            assert mismatches == []

    return LedgerMachine


def test_ledger_matches_the_model(db: Database) -> None:
    run_state_machine_as_test(
        ledger_machine(db),
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# A full return gives back exactly ------------------------------------------------------------------------

SKUS = ("A", "B", "C")
CATEGORIES = ("oil", "parts")
points = st.integers(1, 6)

earning_rules = st.lists(
    st.one_of(
        st.builds(
            lambda p, per, cap: RuleIn(name="spend", kind="spend", points=p, per_amount=Decimal(per), max_points=cap),
            points,
            st.sampled_from(["1.00", "7.50", "10.00"]),
            st.none() | st.integers(1, 300),
        ),
        st.builds(
            lambda p, c: RuleIn(name="category", kind="category", points=p, per_amount=Decimal("5.00"), category=c),
            points,
            st.sampled_from(CATEGORIES),
        ),
        st.builds(
            lambda p, s, per: RuleIn(name="sku", kind="sku", points=p, sku=s, per_amount=per),
            points,
            st.sampled_from(SKUS),
            st.none() | st.just(Decimal("3.00")),
        ),
        st.builds(lambda p: RuleIn(name="visit", kind="visit", points=p), st.integers(1, 50)),
        st.builds(
            lambda f, s, c: RuleIn(name="multiplier", kind="multiplier", factor=Decimal(f), sku=s, category=c),
            st.sampled_from(["0.5", "1.5", "2", "3"]),
            st.none() | st.sampled_from(SKUS),
            st.none() | st.sampled_from(CATEGORIES),
        ),
    ),
    min_size=1,
    max_size=4,
)

baskets = st.lists(
    st.tuples(st.sampled_from(SKUS), st.sampled_from([None, *CATEGORIES]), st.integers(1, 4), st.integers(1, 50_000)),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    given_rules=earning_rules,
    basket=baskets,
    redeem_share=st.sampled_from([Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(1)]),
    by_amount=st.booleans(),
    steps=st.lists(st.integers(1, 100), max_size=3),
)
def test_a_full_return_gives_back_exactly_what_the_purchase_moved(
    db: Database,
    given_rules: list[RuleIn],
    basket: list[tuple[str, str | None, int, int]],
    redeem_share: Fraction,
    by_amount: bool,
    steps: list[int],
) -> None:
    opening = 100_000
    items = [ItemIn(sku=s, category=c, quantity=Decimal(q), unit_price=Decimal(p) / 100) for s, c, q, p in basket]
    total_minor = sum(q * p for _, _, q, p in basket)
    redeem = int(redeem_share * (total_minor // 100))

    def setup(s: Session) -> tuple[uuid.UUID, Any]:
        set_programme(s, pending_days=0, expiry=None)
        only_rules(s, *given_rules)
        member_id = new_member(s)
        ledger.adjust(s, SYSTEM, member_id, AdjustmentIn(external_id="opening", points=opening, reason="opening"))
        data = TransactionIn(external_id=f"t{next(_seq)}", member_id=member_id, items=items, redeem_points=redeem)
        return member_id, transactions.post(s, SYSTEM, data, SECRET)

    member_id, txn = db.write(setup)
    earned, net_minor = txn.points_earned, total_minor - redeem * 100
    assert txn.points_redeemed == redeem
    assert earned >= 0

    # Partial returns first, each in whole units of the items or whole kopecks of the net.
    returns = []
    if by_amount and net_minor > 0:
        left = net_minor
        for step in steps:
            part = max(left * step // 300, 1)
            if part < left:
                returns.append(ReturnIn(external_id=f"x{next(_seq)}", amount=Decimal(part) / 100))
                left -= part
        returns.append(ReturnIn(external_id=f"x{next(_seq)}", amount=Decimal(left) / 100))
    else:
        lines = [[s, q] for s, _, q, _ in basket]
        for step in steps:
            line = lines[step % len(lines)]
            if line[1] > 1:
                returns.append(
                    ReturnIn(external_id=f"x{next(_seq)}", items=[ReturnItemIn(sku=line[0], quantity=Decimal(1))])
                )
                line[1] -= 1
        rest = [ReturnItemIn(sku=s, quantity=Decimal(q)) for s, q in lines if q > 0]
        returns.append(ReturnIn(external_id=f"x{next(_seq)}", items=rest))

    reversed_total = restored_total = 0
    for data in returns:
        answer = db.write(lambda s, data=data: transactions.process_return(s, SYSTEM, txn.id, data))
        reversed_total += answer.points_reversed
        restored_total += answer.points_restored
        assert reversed_total <= earned and restored_total <= redeem

    assert (reversed_total, restored_total) == (earned, redeem)
    stored = db.read(lambda s: s.get(Transaction, txn.id))
    assert (stored.points_reversed, stored.points_restored) == (earned, redeem)
    account = db.read(lambda s: s.get(PointAccount, member_id))
    assert (account.available, account.pending, account.lifetime_earned, account.redeemed) == (opening, 0, 0, 0)

    # Nothing is left to return: one more is refused and changes nothing.
    before = snapshot(db, member_id)
    extra = ReturnIn(external_id=f"x{next(_seq)}", amount=Decimal("0.01"))
    try:
        db.write(lambda s: transactions.process_return(s, SYSTEM, txn.id, extra))
        raise AssertionError("a return past the whole purchase was accepted")
    except ValidationFailed:
        pass
    assert snapshot(db, member_id) == before
    assert db.read(lambda s: verify(s)[1]) == []
