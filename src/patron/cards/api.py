from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, get_secret, require
from patron.cards import service
from patron.cards.models import Card
from patron.cards.schemas import (
    ActivateIn,
    BankCardOut,
    BlockCardIn,
    CardBatchIn,
    CardCreate,
    CardList,
    CardOut,
    ReplaceIn,
)
from patron.db import Database
from patron.errors import ValidationFailed
from patron.kit.api import problems
from patron.members import service as members
from patron.members.schemas import MemberOut

router = APIRouter(tags=["cards"])


def card_out(card: Card) -> CardOut | BankCardOut:
    if card.kind == "bank":
        return BankCardOut(kind="bank", last4=card.last4 or "", status=card.status, member_id=card.member_id)
    return CardOut(number=card.number or "", kind="loyalty", status=card.status, member_id=card.member_id)


@router.post(
    "/members/{member_id}/cards",
    status_code=201,
    response_model=CardOut | BankCardOut,
    responses=problems(404, 409, 422),
)
def add_card(
    member_id: uuid.UUID,
    body: CardCreate,
    db: Database = Depends(get_db),
    secret: bytes = Depends(get_secret),
    actor: Actor = Depends(require(Perm.CARDS)),
) -> CardOut | BankCardOut:
    if body.kind == "bank":
        return db.write(lambda s: card_out(service.add_bank_card(s, actor, member_id, body.pan, secret)))
    if body.pan is not None:
        raise ValidationFailed("pan is for bank cards; a loyalty card takes number", field="pan")
    return db.write(lambda s: card_out(service.add_loyalty_card(s, actor, member_id, body.number)))


@router.get(
    "/members/{member_id}/cards", response_model=dict[str, list[CardOut | BankCardOut]], responses=problems(404)
)
def list_member_cards(
    member_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> dict[str, list[CardOut | BankCardOut]]:
    def run(s: Session) -> dict[str, list[CardOut | BankCardOut]]:
        members.get(s, member_id)
        return {"items": [card_out(c) for c in service.member_cards(s, member_id)]}

    return db.read(run)


@router.post("/cards/batch", status_code=201, response_model=CardList, responses=problems(422))
def issue_batch(
    body: CardBatchIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CARDS))
) -> CardList:
    return db.write(
        lambda s: CardList(items=[card_out(c) for c in service.issue_batch(s, actor, body.count, body.prefix)])
    )


@router.get("/cards/{number}", response_model=CardOut, responses=problems(404))
def get_card(number: str, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))) -> CardOut:
    return db.read(lambda s: card_out(service.get(s, number)))  # type: ignore[return-value]


@router.post("/cards/{number}/activate", response_model=CardOut, responses=problems(404, 409, 422))
def activate_card(
    number: str, body: ActivateIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CARDS))
) -> CardOut:
    return db.write(lambda s: card_out(service.activate(s, actor, number, body.member_id)))  # type: ignore[return-value]


@router.post("/cards/{number}/block", response_model=CardOut, responses=problems(404, 409, 422))
def block_card(
    number: str, body: BlockCardIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CARDS))
) -> CardOut:
    return db.write(lambda s: card_out(service.block(s, actor, number, body.reason)))  # type: ignore[return-value]


@router.post("/cards/{number}/replace", status_code=201, response_model=CardOut, responses=problems(404, 409, 422))
def replace_card(
    number: str,
    body: ReplaceIn | None = None,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.CARDS)),
) -> CardOut:
    new_number = body.number if body else None
    return db.write(lambda s: card_out(service.replace(s, actor, number, new_number)))  # type: ignore[return-value]


@router.get("/identify", response_model=MemberOut, responses=problems(404, 409, 422))
def identify(
    card: str | None = Query(None, description="Loyalty card or member number"),
    phone: str | None = None,
    email: str | None = None,
    track: str | None = Query(None, description="Raw magnetic-stripe data as the reader typed it"),
    bank_pan: str | None = Query(None, description="Bank card number; hashed at once, never kept"),
    db: Database = Depends(get_db),
    secret: bytes = Depends(get_secret),
    _: Actor = Depends(require(Perm.IDENTIFY)),
) -> MemberOut:
    given = {
        k: v
        for k, v in {"card": card, "track": track, "bank_pan": bank_pan, "phone": phone, "email": email}.items()
        if v
    }
    if len(given) != 1:
        raise ValidationFailed("give exactly one of card, phone, email, track, bank_pan", field="card")
    ((by, value),) = given.items()
    return db.read(lambda s: members.present(s, service.identify(s, by, value, secret)))  # type: ignore[arg-type]
