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
from sqlalchemy import select, update
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


def _insert(session: Session):  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(IdempotencyRecord)


def claim(session: Session, scope: str, external_id: str, payload: Any) -> Replay | None:
    """None when this request is new (and now claimed); the first answer when it is a repeat.

    One statement in the usual case: INSERT ... ON CONFLICT DO NOTHING. On PostgreSQL a concurrent
    claim of the same key makes it wait until the other transaction ends; if that one committed,
    nothing is inserted and its answer is read and replayed.
    """
    digest = request_hash(payload)
    stmt = (
        _insert(session)
        .values(
            scope=scope, external_id=external_id, request_hash=digest, status=0, response={}, created_at=clock.now()
        )
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.scope)
    )
    # Core statements on the session's connection: the ORM's bulk paths (and the autoflush they
    # trigger) cost more than the whole idempotency check.
    if session.connection().execute(stmt).first() is not None:
        return None
    first = session.execute(
        select(IdempotencyRecord.request_hash, IdempotencyRecord.status, IdempotencyRecord.response).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.external_id == external_id
        )
    ).one()
    if first.request_hash != digest:
        raise IdempotencyConflict(f"external_id {external_id!r} was already used with a different request body")
    return Replay(first.status, first.response)


def complete(session: Session, scope: str, external_id: str, status: int, body: dict[str, Any]) -> None:
    session.connection().execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.external_id == external_id)
        .values(status=status, response=body)
    )


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
