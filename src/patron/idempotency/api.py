from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from patron.db import Database
from patron.idempotency import service
from patron.idempotency.service import Replay


def run_idempotent(
    db: Database, scope: str, external_id: str, payload: object, work: Callable[[Session], BaseModel], status: int = 201
) -> JSONResponse:
    """Do `work` once per (scope, external_id); repeats get the first answer, marked as replayed."""

    def run(session: Session) -> tuple[Replay, bool]:
        return service.once(session, scope, external_id, payload, lambda: work(session), status)

    result, replayed = db.write(run)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(result.body, status_code=result.status, headers=headers)
