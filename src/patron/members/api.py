from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import Cursor, Limit, problems
from patron.members import service
from patron.members.schemas import BlockIn, MemberCreate, MemberList, MemberOut, MemberPatch

router = APIRouter(tags=["members"])


@router.post("/members", status_code=201, response_model=MemberOut, responses=problems(409, 422))
def enrol(body: MemberCreate, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.ENROL))) -> MemberOut:
    return db.write(lambda s: service.present(s, service.enrol(s, actor, body)))


@router.get("/members", response_model=MemberList, responses=problems(422))
def search_members(
    q: str | None = Query(None, description="Name, email, phone digits, member or card number"),
    phone: str | None = None,
    email: str | None = None,
    card: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.MEMBERS_READ)),
) -> MemberList:
    def run(s: Session) -> MemberList:
        rows, next_cursor = service.search(s, q=q, phone=phone, email=email, card=card, limit=limit, cursor=cursor)
        return MemberList(items=service.present_many(s, rows), next_cursor=next_cursor)

    return db.read(run)


@router.get("/members/{member_id}", response_model=MemberOut, responses=problems(404))
def get_member(
    member_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> MemberOut:
    return db.read(lambda s: service.present(s, service.get(s, member_id)))


@router.patch("/members/{member_id}", response_model=MemberOut, responses=problems(404, 409, 422))
def update_member(
    member_id: uuid.UUID,
    body: MemberPatch,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.MEMBERS_EDIT)),
) -> MemberOut:
    return db.write(lambda s: service.present(s, service.update(s, actor, member_id, body)))


@router.post("/members/{member_id}/block", response_model=MemberOut, responses=problems(404, 422))
def block_member(
    member_id: uuid.UUID,
    body: BlockIn,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.MEMBERS_BLOCK)),
) -> MemberOut:
    return db.write(lambda s: service.present(s, service.block(s, actor, member_id, body.reason)))


@router.post("/members/{member_id}/unblock", response_model=MemberOut, responses=problems(404))
def unblock_member(
    member_id: uuid.UUID, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.MEMBERS_BLOCK))
) -> MemberOut:
    return db.write(lambda s: service.present(s, service.unblock(s, actor, member_id)))
