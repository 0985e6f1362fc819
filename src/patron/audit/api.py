from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.audit import service
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import Cursor, Limit, problems

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor: dict[str, str | None]
    action: str
    entity_type: str
    entity_id: str | None
    details: dict[str, Any]
    request_id: str | None


class AuditList(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


@router.get("/audit", response_model=AuditList, responses=problems(422))
def list_audit(
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.READ_ALL)),
) -> AuditList:
    def run(s: Session) -> AuditList:
        rows, next_cursor = service.search(
            s,
            entity_type=entity_type,
            entity_id=entity_id,
            actor_id=actor_id,
            action=action,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return AuditList(
            items=[
                AuditOut(
                    id=r.id,
                    at=r.at,
                    actor={"kind": r.actor_kind, "id": r.actor_id, "name": r.actor_name},
                    action=r.action,
                    entity_type=r.entity_type,
                    entity_id=r.entity_id,
                    details=r.details,
                    request_id=r.request_id,
                )
                for r in rows
            ],
            next_cursor=next_cursor,
        )

    return db.read(run)
