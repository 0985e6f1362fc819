from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.events import service
from patron.events.schemas import EventIn, EventOut
from patron.idempotency.api import run_idempotent
from patron.kit.api import problems

router = APIRouter(tags=["points"])


@router.post("/events", status_code=201, response_model=EventOut, responses=problems(404, 409, 422))
def post_event(
    body: EventIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.TRANSACT))
) -> JSONResponse:
    return run_idempotent(
        db, "event", body.external_id, body.model_dump(mode="json"), lambda s: service.record(s, actor, body)
    )
