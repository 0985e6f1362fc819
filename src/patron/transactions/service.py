"""Purchases and returns: identify, price, pay with points, earn, and take back on return.

Lock order inside one transaction (see the policy in patron/db.py): the member's point account
first (on a referred member's first purchase, together with the referrer's, in primary-key
order), then the purchase being returned, then coupons in code order. Every path takes them in
this order, so two requests never wait on each other in a cycle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import insert_into
from patron.errors import Forbidden, InsufficientPoints, NotFound, ValidationFailed
from patron.kit import clock
from patron.kit.cards_text import clean_card_number
from patron.kit.ids import new_id
from patron.kit.money import from_minor, round_money, to_minor
from patron.ledger import policy
from patron.ledger import service as ledger
from patron.ledger.models import PointAccount
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import PointsSummary, TierRef
from patron.program import service as program_service
from patron.program.models import PROGRAM_ID, Program
from patron.rewards import service as rewards
from patron.rules import bonuses, engine
from patron.rules import service as rules
from patron.tiers import service as tiers
from patron.transactions.models import Transaction, TransactionLine, TransactionReturn
from patron.transactions.schemas import (
    BreakdownOut,
    ReturnIn,
    ReturnOut,
    TransactionIn,
    TransactionOut,
)

# A till clock a little ahead of ours is normal; a purchase a day in the future is a mistake.
FUTURE_TOLERANCE = timedelta(minutes=5)
PURCHASE_RULE_KINDS = ("spend", "category", "sku", "visit", "multiplier")
# Money at the till stays below 10**15 minor units (10 trillion roubles): far above any real
# purchase, and far enough below BIGINT and Decimal's 28 digits that no sum or share overflows.
MAX_MINOR = 10**15

# The till's statements, built once (see db.insert_into).
TRANSACTIONS: Table = Transaction.__table__  # type: ignore[assignment]
LINES: Table = TransactionLine.__table__  # type: ignore[assignment]
# The programme's row comes along, so that program_service.get finds it in the session.
_BY_CARD = (
    select(Card, Member, PointAccount, Program)
    .join(Member, Member.id == Card.member_id)
    .join(PointAccount, PointAccount.member_id == Member.id)
    .join(Program, Program.id == PROGRAM_ID)
    .where(Card.number == bindparam("number"), Member.referred_by_id.is_(None))
    .with_for_update(of=PointAccount)
    .execution_options(populate_existing=True)
)


@dataclass
class PricedLine:
    sku: str
    name: str | None
    category: str | None
    quantity: Decimal
    unit_price: int
    total: int


def _identify(
    session: Session, data: TransactionIn, secret: bytes
) -> tuple[Member, PointAccount | None, Program | None]:
    """The member; and their point account, locked, and the programme when a card leads
    straight to them (the caller keeps the programme: the session holds loaded rows only while
    something refers to them).

    That is the till's usual case, so it is one statement (card, member, account and programme
    joined, the account row locked) instead of three. Anything else goes through cards.identify,
    and so do referred members: their first purchase locks the referrer's account too, which may
    come first in key order."""
    given = [(k, v) for k, v in (("member_id", data.member_id), ("card", data.card), ("phone", data.phone)) if v]
    if len(given) != 1:
        raise ValidationFailed("give exactly one of member_id, card, phone", field="member_id")
    by, value = given[0]
    if by == "card":
        try:
            number = clean_card_number(str(value))
        except ValueError:
            number = None
        if number is not None:
            row = session.execute(_BY_CARD, {"number": number}).first()
            if row is not None and row.Member.status != "erased":
                cards.check_card(row.Card)
                return row.Member, row.PointAccount, row.Program
    return cards.identify(session, by, str(value), secret), None, None  # type: ignore[arg-type]


def _price(program: Program, data: TransactionIn) -> tuple[list[PricedLine], int]:
    currency = program.currency
    lines: list[PricedLine] = []
    for i, item in enumerate(data.items or []):
        if item.quantity <= 0:
            raise ValidationFailed("quantity must be above zero", field=f"items.{i}.quantity")
        if item.unit_price < 0:
            raise ValidationFailed("unit_price cannot be negative", field=f"items.{i}.unit_price")
        try:
            unit = to_minor(item.unit_price, currency)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field=f"items.{i}.unit_price") from exc
        if unit >= MAX_MINOR:
            raise ValidationFailed("unit_price is too large", field=f"items.{i}.unit_price")
        if item.quantity * unit >= MAX_MINOR:
            raise ValidationFailed("the line's amount is too large", field=f"items.{i}.quantity")
        total = to_minor(round_money(item.quantity * item.unit_price, currency), currency)
        lines.append(PricedLine(item.sku, item.name, item.category, item.quantity, unit, total))
    if data.items is not None and not lines:
        raise ValidationFailed("items cannot be empty; send total alone instead", field="items")
    if lines:
        total = sum(line.total for line in lines)
        if total >= MAX_MINOR:
            raise ValidationFailed("the total is too large", field="items")
        if data.total is not None:
            try:
                given = to_minor(data.total, currency)
            except ValueError as exc:
                raise ValidationFailed(str(exc), field="total") from exc
            if given != total:
                raise ValidationFailed(
                    f"total {data.total} does not equal the sum of the items {from_minor(total, currency)}",
                    field="total",
                )
        return lines, total
    if data.total is None:
        raise ValidationFailed("give items or a total", field="total")
    if data.total < 0:
        raise ValidationFailed("total cannot be negative", field="total")
    try:
        total = to_minor(data.total, currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="total") from exc
    if total >= MAX_MINOR:
        raise ValidationFailed("the total is too large", field="total")
    return [], total


def balance_of(account: PointAccount) -> PointsSummary:
    return PointsSummary(available=account.available, pending=account.pending)


def _has_transactions(session: Session, member_id: uuid.UUID) -> bool:
    return session.scalar(select(Transaction.id).where(Transaction.member_id == member_id).limit(1)) is not None


def _lock_accounts(
    session: Session, member: Member, locked: PointAccount | None
) -> tuple[PointAccount, PointAccount | None]:
    """The member's account, locked (`locked` when identification already did it, which it never
    does for a referred member); and the referrer's too when this is the first purchase of a
    referred member, since `referral` rules reward both then. Two accounts are locked in
    primary-key order; the first-purchase check is repeated once the locks are held, because a
    concurrent first purchase may have committed while this one waited."""
    referrer_id = member.referred_by_id
    if referrer_id is None or _has_transactions(session, member.id):
        return locked or ledger.lock_account(session, member.id), None
    accounts = {i: ledger.lock_account(session, i) for i in sorted({member.id, referrer_id})}
    if _has_transactions(session, member.id):
        return accounts[member.id], None
    return accounts[member.id], accounts[referrer_id]


def post(session: Session, actor: Actor, data: TransactionIn, secret: bytes) -> TransactionOut:
    now = clock.now()
    occurred_at = data.occurred_at or now
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed("occurred_at is in the future", field="occurred_at")
    if actor.location and data.location and data.location != actor.location:
        raise Forbidden(f"This key may only record transactions at {actor.location}")
    location = data.location or actor.location

    member, locked, program = _identify(session, data, secret)
    members.require_active(member)
    program = program or program_service.get(session)
    lines, total = _price(program, data)
    account, referrer_account = _lock_accounts(session, member, locked)
    if len(tiers.ladder(session)) > 1:
        # The tier changes only under this lock: read it again now that we hold it, so that two
        # purchases crossing a threshold together upgrade once and the next earns at the new rate.
        session.refresh(member, ["tier_code"])
    ledger.release_matured(session, account, now)

    discount = 0
    coupon_uses: list[tuple[str, int]] = []
    applied = rewards.apply_coupons(session, member.id, data.coupons, total, lines, now) if data.coupons else None
    if applied is not None:
        discount, coupon_uses = applied.discount, applied.uses

    points_value = data.redeem_points * program.point_value_minor
    if data.redeem_points > 0 and account.available < data.redeem_points:
        raise InsufficientPoints(f"{data.redeem_points} points requested, {max(account.available, 0)} available")
    amount_due = total - discount - points_value
    if amount_due < 0:
        raise ValidationFailed("the points redeemed are worth more than is left to pay", field="redeem_points")

    shares = engine.spread(discount + points_value, [line.total for line in lines])
    basket = engine.Basket(
        total=total,
        amount_due=amount_due,
        lines=tuple(
            engine.Line(line.sku, line.category, line.quantity, line.total, line.total - share)
            for line, share in zip(lines, shares, strict=True)
        ),
        occurred_at=occurred_at,
        channel=data.channel,
        location=location,
    )
    context = tiers.member_context(session, member)
    result = engine.earn(
        basket, rules.active_rules(session, PURCHASE_RULE_KINDS), context, program_service.zone(program)
    )

    txn_id = new_id()
    src = ledger.Source(actor=actor, transaction_id=txn_id)
    if applied is not None:
        rewards.mark_used(applied, txn_id, now)
    if data.redeem_points:
        ledger.debit(session, account, "redeem", data.redeem_points, src)
    if result.points > 0:
        ledger.credit(
            session,
            account,
            "earn",
            result.points,
            src,
            available_at=policy.available_at(program, occurred_at),
            expires_at=policy.expires_at(program, occurred_at),
        )
    if referrer_account is not None:
        when = engine.Occasion(at=occurred_at, channel=data.channel, location=location, total=total)
        bonuses.award(session, member, account, "referral", when, actor)
        referrer = members.get(session, referrer_account.member_id)
        if referrer.status == "active":  # a blocked member earns nothing
            bonuses.award(session, referrer, referrer_account, "referral", when, actor)
    tiers.after_purchase(session, member, amount_due, occurred_at)
    tier_names = tiers.names(session)
    currency = program.currency
    answer = TransactionOut(
        id=txn_id,
        external_id=data.external_id,
        member_id=member.id,
        occurred_at=occurred_at,
        location=location,
        channel=data.channel,
        total=from_minor(total, currency),
        discount=from_minor(discount, currency),
        points_redeemed=data.redeem_points,
        points_value=from_minor(points_value, currency),
        amount_due=from_minor(amount_due, currency),
        points_earned=result.points,
        breakdown=[BreakdownOut(rule_id=c.rule_id, rule_name=c.rule_name, points=c.points) for c in result.breakdown],
        balance=balance_of(account),
        tier=TierRef(code=member.tier_code, name=tier_names.get(member.tier_code, member.tier_code)),
        coupons=[{"code": code, "discount": from_minor(d, currency)} for code, d in coupon_uses],
    )
    # Plain Core inserts: the purchase is written once and never changed here, so the ORM's unit
    # of work would only add cost on the till's hot path.
    conn = session.connection()
    conn.execute(
        insert_into(TRANSACTIONS),
        {
            "id": txn_id,
            "external_id": data.external_id,
            "member_id": member.id,
            "occurred_at": occurred_at,
            "location": location,
            "channel": data.channel,
            "currency": currency,
            "total_minor": total,
            "discount_minor": discount,
            "points_redeemed": data.redeem_points,
            "points_value_minor": points_value,
            "amount_due_minor": amount_due,
            "points_earned": result.points,
            "returned_amount_minor": 0,
            "returned_net_minor": 0,
            "points_reversed": 0,
            "points_restored": 0,
            "answer": answer.model_dump(mode="json"),
            "actor_kind": actor.kind,
            "actor_id": actor.id,
            "created_at": now,
        },
    )
    if lines:
        conn.execute(
            insert_into(LINES),
            [
                {
                    "id": new_id(),
                    "transaction_id": txn_id,
                    "position": i,
                    "sku": line.sku,
                    "name": line.name,
                    "category": line.category,
                    "quantity": str(line.quantity),
                    "unit_price_minor": line.unit_price,
                    "total_minor": line.total,
                    "net_minor": bl.net,
                    "returned_quantity": "0",
                }
                for i, (line, bl) in enumerate(zip(lines, basket.lines, strict=True))
            ],
        )
    return answer


def get(session: Session, transaction_id: uuid.UUID, *, for_update: bool = False) -> Transaction:
    # A locked read must see the row as committed now, not as this session first loaded it: a
    # return reads the purchase before it waits for the account lock (see process_return).
    txn = session.get(Transaction, transaction_id, with_for_update=for_update, populate_existing=for_update)
    if txn is None:
        raise NotFound("No such transaction")
    return txn


def _half_up(value: Fraction) -> int:
    """Points from a fraction, rounded half up (the one rounding returns use)."""
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def process_return(session: Session, actor: Actor, transaction_id: uuid.UUID, data: ReturnIn) -> ReturnOut:
    """Take back the share of points that the returned goods earned, and give back the share of
    points that paid for them. The share is the returned net amount over the transaction's net."""
    if (data.items is None) == (data.amount is None):
        raise ValidationFailed("give items or amount (one of them)", field="items")
    # Lock order: account, then the transaction (its member is read first without a lock).
    member_id = get(session, transaction_id).member_id
    account = ledger.lock_account(session, member_id)
    txn = get(session, transaction_id, for_update=True)
    lines = list(
        session.scalars(
            select(TransactionLine).where(TransactionLine.transaction_id == txn.id).order_by(TransactionLine.position)
        )
    )
    net = txn.amount_due_minor

    def returned_share() -> Fraction:
        """The share of the transaction returned so far, items and amounts together."""
        if net > 0:
            by_items = sum(
                (
                    Fraction(line.net_minor) * Fraction(line.returned_quantity) / Fraction(line.quantity)
                    for line in lines
                ),
                Fraction(0),
            )
            return (by_items + txn.returned_amount_minor) / net
        gross = sum(line.total_minor for line in lines)
        return (
            sum(
                (
                    Fraction(line.total_minor) * Fraction(line.returned_quantity) / Fraction(line.quantity)
                    for line in lines
                ),
                Fraction(0),
            )
            / gross
            if gross
            else Fraction(0)
        )

    amount_minor = None
    if data.items is not None:
        if not lines:
            raise ValidationFailed("this transaction has no items; return an amount", field="items")
        for i, item in enumerate(data.items):
            if item.quantity <= 0:
                raise ValidationFailed("quantity must be above zero", field=f"items.{i}.quantity")
            left = item.quantity
            for line in (line for line in lines if line.sku == item.sku):
                room = Decimal(line.quantity) - Decimal(line.returned_quantity)
                take = min(room, left)
                if take > 0:
                    line.returned_quantity = str(Decimal(line.returned_quantity) + take)
                    left -= take
            if left > 0:
                raise ValidationFailed(
                    f"more of {item.sku} returned than was bought and not yet returned", field=f"items.{i}.quantity"
                )
    else:
        assert data.amount is not None
        if net <= 0:
            raise ValidationFailed("nothing was paid in money, so there is no amount to return", field="amount")
        try:
            amount_minor = to_minor(data.amount, txn.currency)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="amount") from exc
        if amount_minor <= 0:
            raise ValidationFailed("amount must be above zero", field="amount")
        txn.returned_amount_minor += amount_minor
    after = returned_share()
    if after > 1:
        raise ValidationFailed(
            "more returned than the transaction's net amount", field="amount" if amount_minor else "items"
        )

    txn.returned_net_minor = min(_half_up(net * after), net) if net > 0 else 0
    # Cumulative rounding: after any sequence of partial returns, a full return has reversed
    # exactly what was earned and restored exactly what was redeemed.
    reversed_total = min(_half_up(txn.points_earned * after), txn.points_earned)
    restored_total = min(_half_up(txn.points_redeemed * after), txn.points_redeemed)
    to_reverse = max(reversed_total - txn.points_reversed, 0)
    to_restore = max(restored_total - txn.points_restored, 0)
    txn.points_reversed += to_reverse
    txn.points_restored += to_restore

    ret = TransactionReturn(
        transaction_id=txn.id,
        external_id=data.external_id,
        amount_minor=amount_minor,
        items=[{"sku": i.sku, "quantity": str(i.quantity)} for i in data.items or []],
        points_reversed=to_reverse,
        points_restored=to_restore,
        created_at=clock.now(),
    )
    session.add(ret)
    session.flush()
    src = ledger.Source(actor=actor, transaction_id=txn.id, reason=f"return {data.external_id}")
    if to_reverse:
        ledger.reverse_earning(session, account, txn.id, to_reverse, src)
    if to_restore:
        redeems = [e.id for e in ledger.transaction_entries(session, txn.id, "redeem")]
        ledger.restore(session, account, redeems, to_restore, src)
    return ReturnOut(
        id=ret.id,
        transaction_id=txn.id,
        points_reversed=to_reverse,
        points_restored=to_restore,
        balance=balance_of(account),
    )
