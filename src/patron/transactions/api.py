from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, get_secret, require
from patron.db import Database
from patron.idempotency.api import run_idempotent
from patron.kit.api import problems
from patron.transactions import service
from patron.transactions.schemas import ReturnIn, ReturnOut, TransactionIn, TransactionOut

router = APIRouter(tags=["transactions"])


@router.post("/transactions", status_code=201, response_model=TransactionOut, responses=problems(404, 409, 422))
def post_transaction(
    body: TransactionIn,
    db: Database = Depends(get_db),
    secret: bytes = Depends(get_secret),
    actor: Actor = Depends(require(Perm.TRANSACT)),
) -> JSONResponse:
    return run_idempotent(
        db,
        "transaction",
        body.external_id,
        body.model_dump(mode="json"),
        lambda s: service.post(s, actor, body, secret),
    )


@router.get("/transactions/{transaction_id}", response_model=TransactionOut, responses=problems(404))
def get_transaction(
    transaction_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> JSONResponse:
    return JSONResponse(db.read(lambda s: service.get(s, transaction_id).answer))


@router.post(
    "/transactions/{transaction_id}/returns",
    status_code=201,
    response_model=ReturnOut,
    responses=problems(404, 409, 422),
)
def post_return(
    transaction_id: uuid.UUID,
    body: ReturnIn,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.TRANSACT)),
) -> JSONResponse:
    payload = {"transaction_id": str(transaction_id), **body.model_dump(mode="json")}
    return run_idempotent(
        db, "return", body.external_id, payload, lambda s: service.process_return(s, actor, transaction_id, body)
    )
