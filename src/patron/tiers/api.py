from __future__ import annotations

from fastapi import APIRouter, Depends

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import problems
from patron.tiers import service
from patron.tiers.schemas import LadderIn, LadderOut

router = APIRouter(tags=["tiers"])


@router.get("/tiers", response_model=LadderOut, responses=problems())
def get_tiers(db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))) -> LadderOut:
    return db.read(service.ladder_out)


@router.put("/tiers", response_model=LadderOut, responses=problems(422))
def put_tiers(
    body: LadderIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> LadderOut:
    return db.write(lambda s: service.put_ladder(s, actor, body))
