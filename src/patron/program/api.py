from __future__ import annotations

from fastapi import APIRouter, Depends

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import problems
from patron.program import service
from patron.program.schemas import ProgramOut, ProgramPatch

router = APIRouter(tags=["programme"])


@router.get("/program", response_model=ProgramOut, responses=problems())
def get_program(db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))) -> ProgramOut:
    return db.read(lambda s: service.to_out(service.get(s)))


@router.patch("/program", response_model=ProgramOut, responses=problems(422))
def patch_program(
    body: ProgramPatch, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> ProgramOut:
    return db.write(lambda s: service.to_out(service.update(s, actor, body)))
