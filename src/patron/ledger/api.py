from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.idempotency.api import run_idempotent
from patron.kit.api import Cursor, Limit, problems
from patron.ledger import service
from patron.ledger.schemas import AdjustmentIn, EntryList, EntryOut, PointsOut, RedemptionIn
from patron.members import service as members

router = APIRouter(tags=["points"])


@router.get("/members/{member_id}/points", response_model=PointsOut, responses=problems(404))
def get_points(
    member_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> PointsOut:
    def run(s: Session) -> PointsOut:
        members.get(s, member_id)
        return service.summary(s, member_id)

    return db.read(run)


@router.get("/members/{member_id}/ledger", response_model=EntryList, responses=problems(404, 422))
def get_ledger(
    member_id: uuid.UUID,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.MEMBERS_READ)),
) -> EntryList:
    def run(s: Session) -> EntryList:
        members.get(s, member_id)
        rows, next_cursor = service.entries(s, member_id, limit=limit, cursor=cursor)
        return EntryList(items=[service.entry_out(e) for e in rows], next_cursor=next_cursor)

    return db.read(run)


@router.post(
    "/members/{member_id}/points/adjustments",
    status_code=201,
    response_model=EntryOut,
    responses=problems(404, 409, 422),
)
def post_adjustment(
    member_id: uuid.UUID,
    body: AdjustmentIn,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.POINTS_ADJUST)),
) -> JSONResponse:
    payload = {"member_id": str(member_id), **body.model_dump(mode="json")}
    return run_idempotent(
        db, "adjustment", body.external_id, payload, lambda s: service.adjust(s, actor, member_id, body)
    )


@router.post(
    "/members/{member_id}/points/redemptions",
    status_code=201,
    response_model=EntryOut,
    responses=problems(404, 409, 422),
)
def post_redemption(
    member_id: uuid.UUID,
    body: RedemptionIn,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.POINTS_REDEEM)),
) -> JSONResponse:
    payload = {"member_id": str(member_id), **body.model_dump(mode="json")}
    return run_idempotent(
        db, "redemption", body.external_id, payload, lambda s: service.redeem(s, actor, member_id, body)
    )
