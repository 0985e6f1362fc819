from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import Cursor, Limit, problems
from patron.rules import service
from patron.rules.schemas import RuleIn, RuleKind, RuleList, RuleOut, RulePatch

router = APIRouter(tags=["earning rules"])


@router.post("/earning-rules", status_code=201, response_model=RuleOut, responses=problems(422))
def create_rule(
    body: RuleIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> RuleOut:
    return db.write(lambda s: service.to_out(s, service.create(s, actor, body)))


@router.get("/earning-rules", response_model=RuleList, responses=problems(422))
def list_rules(
    kind: RuleKind | None = None,
    active: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.READ_ALL)),
) -> RuleList:
    def run(s: Session) -> RuleList:
        rows, next_cursor = service.listing(s, kind=kind, active=active, limit=limit, cursor=cursor)
        return RuleList(items=[service.to_out(s, r) for r in rows], next_cursor=next_cursor)

    return db.read(run)


@router.get("/earning-rules/{rule_id}", response_model=RuleOut, responses=problems(404))
def get_rule(rule_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.READ_ALL))) -> RuleOut:
    return db.read(lambda s: service.to_out(s, service.get(s, rule_id)))


@router.patch("/earning-rules/{rule_id}", response_model=RuleOut, responses=problems(404, 422))
def patch_rule(
    rule_id: uuid.UUID, body: RulePatch, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> RuleOut:
    return db.write(lambda s: service.to_out(s, service.update(s, actor, rule_id, body)))


@router.delete("/earning-rules/{rule_id}", status_code=204, responses=problems(404))
def delete_rule(
    rule_id: uuid.UUID, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> Response:
    db.write(lambda s: service.delete(s, actor, rule_id))
    return Response(status_code=204)
