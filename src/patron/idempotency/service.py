"""Idempotency by the caller's external_id.

The key is claimed by inserting its row at the start of the transaction that does the work. A
concurrent duplicate blocks on that row's unique key (PostgreSQL) or on the write lock (SQLite)
until the first commits, then finds the stored answer and replays it. A refused request rolls
back, claim included, so a retry is judged afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.errors import IdempotencyConflict
from patron.idempotency.models import IdempotencyRecord
from patron.kit import clock


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


# Built once: a statement object keeps its cache key, so executing it again skips building the
# statement and its key, a real share of the till's CPU.
_CLAIM = {
    name: dialect.insert(IdempotencyRecord).on_conflict_do_nothing().returning(IdempotencyRecord.scope)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_FIRST = select(IdempotencyRecord.request_hash, IdempotencyRecord.status, IdempotencyRecord.response).where(
    IdempotencyRecord.scope == bindparam("s"), IdempotencyRecord.external_id == bindparam("e")
)
_COMPLETE = (
    update(IdempotencyRecord)
    .where(IdempotencyRecord.scope == bindparam("s"), IdempotencyRecord.external_id == bindparam("e"))
    .values(status=bindparam("new_status"), response=bindparam("new_response"))
)


def claim(session: Session, scope: str, external_id: str, payload: Any) -> Replay | None:
    """None when this request is new (and now claimed); the first answer when it is a repeat.

    One statement in the usual case: INSERT ... ON CONFLICT DO NOTHING. On PostgreSQL a concurrent
    claim of the same key makes it wait until the other transaction ends; if that one committed,
    nothing is inserted and its answer is read and replayed.
    """
    digest = request_hash(payload)
    # Core statements on the session's connection: the ORM's bulk paths (and the autoflush they
    # trigger) cost more than the whole idempotency check.
    conn = session.connection()
    row = {
        "scope": scope,
        "external_id": external_id,
        "request_hash": digest,
        "status": 0,
        "response": {},
        "created_at": clock.now(),
    }
    if conn.execute(_CLAIM[conn.dialect.name], row).first() is not None:
        return None
    first = conn.execute(_FIRST, {"s": scope, "e": external_id}).one()
    if first.request_hash != digest:
        raise IdempotencyConflict(f"external_id {external_id!r} was already used with a different request body")
    return Replay(first.status, first.response)


def complete(session: Session, scope: str, external_id: str, status: int, body: dict[str, Any]) -> None:
    session.connection().execute(_COMPLETE, {"s": scope, "e": external_id, "new_status": status, "new_response": body})


def once(
    session: Session, scope: str, external_id: str, payload: Any, work: Callable[[], BaseModel], status: int = 201
) -> tuple[Replay, bool]:
    """Do `work` once per (scope, external_id): (its answer, False), or (the first answer, True)
    for a repeat. The API's endpoints and the web forms that move points share this."""
    replay = claim(session, scope, external_id, payload)
    if replay is not None:
        return replay, True
    body = work().model_dump(mode="json")
    complete(session, scope, external_id, status, body)
    return Replay(status, body), False
