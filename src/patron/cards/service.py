"""Loyalty cards, linked bank cards and identification of the customer at the till.

Bank card numbers (PANs) are reduced to a keyed HMAC-SHA256 and the last four digits the moment
they arrive; nothing else about them is kept, logged or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.cards.models import Card
from patron.errors import CardBlocked, CardInUse, CardStateConflict, NotFound, ValidationFailed
from patron.kit import clock
from patron.kit.cards_text import clean_card_number
from patron.kit.ids import random_digits
from patron.kit.luhn import is_valid, with_check_digit
from patron.kit.track import InvalidTrack, parse_track
from patron.members import service as members
from patron.members.models import Member
from patron.program import service as program_service

CARD_LENGTH = 16


def pan_hash(secret: bytes, pan: str) -> str:
    return hmac.new(secret, pan.encode(), hashlib.sha256).hexdigest()


def loyalty_number(text: str, field: str = "number") -> str:
    try:
        number = clean_card_number(text)
    except ValueError as exc:
        raise ValidationFailed("a card number has only digits", field=field) from exc
    if not 8 <= len(number) <= 19 or not is_valid(number):
        raise ValidationFailed("not a valid card number (check digit does not match)", field=field)
    return number


def _bank_pan(text: str, field: str = "pan") -> str:
    try:
        pan = clean_card_number(text)
    except ValueError as exc:
        raise ValidationFailed("a bank card number has only digits", field=field) from exc
    if not 12 <= len(pan) <= 19 or not is_valid(pan):
        raise ValidationFailed("not a valid bank card number", field=field)
    return pan


def generate_number(session: Session, prefix: str | None = None) -> str:
    prefix = prefix if prefix is not None else program_service.get(session).card_prefix
    for _ in range(20):
        number = with_check_digit(prefix + random_digits(CARD_LENGTH - 1 - len(prefix)))
        if session.scalar(select(func.count()).where(Card.number == number)) == 0:
            return number
    raise RuntimeError("card number space near the prefix is exhausted")  # pragma: no cover


def get(session: Session, number: str, *, for_update: bool = False) -> Card:
    try:
        clean = clean_card_number(number)
    except ValueError as exc:
        raise NotFound("No such card") from exc
    stmt = select(Card).where(Card.number == clean, Card.kind == "loyalty")
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    card = session.scalars(stmt).first()
    if card is None:
        raise NotFound("No such card")
    return card


def _flush_unique(session: Session) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent request took the same number
        raise CardInUse("The card number is already in use") from exc


def _attach(session: Session, member: Member, number: str) -> Card:
    """Give `number` to `member`: a free card from a batch is taken, a new number is created."""
    now = clock.now()
    existing = session.scalars(select(Card).where(Card.number == number).with_for_update()).first()
    if existing is not None:
        if existing.member_id is not None and existing.member_id != member.id:
            raise CardInUse("The card number belongs to another member")
        if existing.status == "blocked":
            raise CardBlocked("The card is blocked")
        if existing.status == "replaced":
            raise CardStateConflict("The card was replaced and cannot be used again")
        existing.member_id, existing.status, existing.updated_at = member.id, "active", now
        return existing
    card = Card(kind="loyalty", number=number, status="active", member_id=member.id, created_at=now, updated_at=now)
    session.add(card)
    _flush_unique(session)
    return card


def add_loyalty_card(session: Session, actor: Actor, member_id: uuid.UUID, number: str | None) -> Card:
    member = members.get(session, member_id)
    members.require_active(member)
    clean = loyalty_number(number) if number else generate_number(session)
    card = _attach(session, member, clean)
    audit.record(session, actor, "card.add", "card", card.id, {"member_id": str(member.id)})
    return card


def add_bank_card(session: Session, actor: Actor, member_id: uuid.UUID, pan_text: str | None, secret: bytes) -> Card:
    if not pan_text:
        raise ValidationFailed("a bank card needs its number in pan", field="pan")
    member = members.get(session, member_id)
    members.require_active(member)
    pan = _bank_pan(pan_text)
    digest, last4 = pan_hash(secret, pan), pan[-4:]
    del pan
    existing = session.scalars(select(Card).where(Card.pan_hash == digest)).first()
    if existing is not None:
        if existing.member_id != member.id:
            raise CardInUse("This bank card is linked to another member")
        return existing
    now = clock.now()
    card = Card(
        kind="bank", pan_hash=digest, last4=last4, status="active", member_id=member.id, created_at=now, updated_at=now
    )
    session.add(card)
    _flush_unique(session)
    audit.record(session, actor, "card.link_bank", "card", card.id, {"member_id": str(member.id), "last4": last4})
    return card


def issue_batch(session: Session, actor: Actor, count: int, prefix: str | None) -> list[Card]:
    now = clock.now()
    prefix = prefix if prefix is not None else program_service.get(session).card_prefix
    if len(prefix) > CARD_LENGTH - 6:
        raise ValidationFailed("the prefix leaves too few digits for unique numbers", field="prefix")
    numbers: set[str] = set()
    while len(numbers) < count:
        numbers.add(with_check_digit(prefix + random_digits(CARD_LENGTH - 1 - len(prefix))))
    taken = set(session.scalars(select(Card.number).where(Card.number.in_(numbers))))
    while taken:  # rare: replace the numbers that already exist and check again
        numbers -= taken
        fresh: set[str] = set()
        while len(numbers) + len(fresh) < count:
            fresh.add(with_check_digit(prefix + random_digits(CARD_LENGTH - 1 - len(prefix))))
        fresh -= numbers
        taken = set(session.scalars(select(Card.number).where(Card.number.in_(fresh))))
        numbers |= fresh - taken
    cards = [Card(kind="loyalty", number=n, status="issued", created_at=now, updated_at=now) for n in sorted(numbers)]
    session.add_all(cards)
    _flush_unique(session)
    audit.record(session, actor, "card.issue_batch", "card", None, {"count": count, "prefix": prefix})
    return cards


def activate(session: Session, actor: Actor, number: str, member_id: uuid.UUID) -> Card:
    card = get(session, number, for_update=True)
    member = members.get(session, member_id)
    members.require_active(member)
    if card.status == "blocked":
        raise CardBlocked("The card is blocked")
    if card.status == "replaced":
        raise CardStateConflict("The card was replaced and cannot be activated again")
    if card.member_id is not None and card.member_id != member.id:
        raise CardInUse("The card belongs to another member")
    if card.status != "active" or card.member_id != member.id:
        card.member_id, card.status, card.updated_at = member.id, "active", clock.now()
        audit.record(session, actor, "card.activate", "card", card.id, {"member_id": str(member.id)})
    return card


def block(session: Session, actor: Actor, number: str, reason: str) -> Card:
    card = get(session, number, for_update=True)
    if card.status == "replaced":
        raise CardStateConflict("The card was replaced; block the new card instead")
    if card.status != "blocked":
        card.status, card.block_reason, card.updated_at = "blocked", reason, clock.now()
        audit.record(session, actor, "card.block", "card", card.id, {"reason": reason})
    return card


def replace(session: Session, actor: Actor, number: str, new_number: str | None) -> Card:
    old = get(session, number, for_update=True)
    if old.member_id is None:
        raise CardStateConflict("Only a card that belongs to a member can be replaced")
    if old.status == "replaced":
        raise CardStateConflict("The card was already replaced")
    member = members.get(session, old.member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    clean = loyalty_number(new_number) if new_number else generate_number(session)
    if clean == old.number:
        raise ValidationFailed("the new card needs a different number", field="number")
    new = _attach(session, member, clean)
    old.status, old.replaced_by_id, old.updated_at = "replaced", new.id, clock.now()
    audit.record(
        session, actor, "card.replace", "card", old.id, {"new_card_id": str(new.id), "member_id": str(member.id)}
    )
    return new


def member_cards(session: Session, member_id: uuid.UUID) -> list[Card]:
    return list(session.scalars(select(Card).where(Card.member_id == member_id).order_by(Card.created_at)))


IdentifyBy = Literal["card", "phone", "email", "track", "bank_pan", "member_id"]


def check_card(card: Card) -> None:
    if card.status == "blocked":
        raise CardBlocked("The card is blocked")
    if card.status == "replaced":
        raise CardBlocked("The card was replaced by a new one")


def _member_of(session: Session, card: Card | None) -> Member:
    if card is None or card.member_id is None:
        raise NotFound("No member with this card")
    check_card(card)
    member = members.get(session, card.member_id)
    if member.status == "erased":
        raise NotFound("No member with this card")
    return member


def _by_number(session: Session, number: str, secret: bytes) -> Member:
    row = session.execute(
        select(Card, Member).outerjoin(Member, Member.id == Card.member_id).where(Card.number == number)
    ).first()
    if row is not None:
        card, member = row
        if member is None:
            raise NotFound("No member with this card")
        check_card(card)
        if member.status == "erased":
            raise NotFound("No member with this card")
        return member
    by_number = session.scalars(select(Member).where(Member.number == number, Member.status != "erased")).first()
    if by_number is not None:
        return by_number
    if is_valid(number) and 12 <= len(number) <= 19:
        bank = session.scalars(select(Card).where(Card.pan_hash == pan_hash(secret, number))).first()
        return _member_of(session, bank)
    raise NotFound("No member with this card")


def identify(session: Session, by: IdentifyBy, value: str, secret: bytes) -> Member:
    """The member presenting `value`. A blocked member is still identified; a blocked card is not."""
    if by == "member_id":
        member = members.get(session, value)
    elif by == "card":
        try:
            number = clean_card_number(value)
        except ValueError as exc:
            raise ValidationFailed("a card number has only digits", field="card") from exc
        member = _by_number(session, number, secret)
    elif by == "track":
        try:
            data = parse_track(value)
        except InvalidTrack as exc:
            raise ValidationFailed(str(exc), field="track") from exc
        member = _by_number(session, data.number, secret)
    elif by == "bank_pan":
        pan = _bank_pan(value, field="bank_pan")
        bank = session.scalars(select(Card).where(Card.pan_hash == pan_hash(secret, pan))).first()
        member = _member_of(session, bank)
    elif by == "phone":
        phone = members.phone_for(session, value)
        found = session.scalars(select(Member).where(Member.phone == phone)).first()
        if found is None:
            raise NotFound("No member with this phone")
        member = found
    else:
        try:
            email = members.normalize_email(value)
        except ValidationFailed:
            email = value.strip().lower()
        found = session.scalars(select(Member).where(Member.email == email)).first()
        if found is None:
            raise NotFound("No member with this email")
        member = found
    if member.status == "erased":
        raise NotFound("No such member")
    return member
