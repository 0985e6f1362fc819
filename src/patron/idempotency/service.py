"""Idempotency by the caller's external_id.

The key is claimed by inserting its row at the start of the transaction that does the work. A
concurrent duplicate blocks on that row's unique key (PostgreSQL) or on the write lock (SQLite)
until the first commits, then finds the stored answer and replays it. A refused request rolls
back, claim included, so a retry is judged afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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


def _replay_or_conflict(record: IdempotencyRecord, digest: str) -> Replay:
    if record.request_hash != digest:
        raise IdempotencyConflict(
            f"external_id {record.external_id!r} was already used with a different request body"
        )
    return Replay(record.status, record.response)


def claim(session: Session, scope: str, external_id: str, payload: Any) -> Replay | None:
    """None when this request is new (and now claimed); the first answer when it is a repeat."""
    digest = request_hash(payload)
    existing = session.get(IdempotencyRecord, (scope, external_id))
    if existing is not None:
        return _replay_or_conflict(existing, digest)
    record = IdempotencyRecord(
        scope=scope, external_id=external_id, request_hash=digest, status=0, response={}, created_at=clock.now()
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        winner = session.scalars(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.scope == scope, IdempotencyRecord.external_id == external_id)
            .execution_options(populate_existing=True)
        ).one()
        return _replay_or_conflict(winner, digest)
    return None


def complete(session: Session, scope: str, external_id: str, status: int, body: dict[str, Any]) -> None:
    record = session.get(IdempotencyRecord, (scope, external_id))
    assert record is not None, "complete() without claim()"
    record.status = status
    record.response = body
