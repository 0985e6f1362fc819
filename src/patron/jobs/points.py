"""Set-wise point jobs: release pending points, expire points.

Both walk the members that have something to do in chunks, in member-id order. Each chunk is one
transaction: lock the chunk's accounts (in primary-key order), then a handful of statements over
the whole chunk. Re-running a job, or running it with an `as_of` it has already passed, finds
nothing left to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from patron.db import Database
from patron.kit import clock
from patron.kit.ids import new_id
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry, PointAccount, PointLot

CHUNK = 5000
Progress = Callable[[int], None]


def _lock_accounts(session: Session, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, PointAccount]:
    rows = session.scalars(
        select(PointAccount)
        .where(PointAccount.member_id.in_(member_ids))
        .order_by(PointAccount.member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {a.member_id: a for a in rows}


def _chunks(
    db: Database,
    find: Callable[[Session, uuid.UUID | None], list[uuid.UUID]],
    work: Callable[[Session, list[uuid.UUID]], int],
    progress: Progress | None,
) -> tuple[int, int]:
    members = points = 0
    after: uuid.UUID | None = None
    while True:
        ids = db.read(lambda s, after=after: find(s, after))  # type: ignore[misc]
        if not ids:
            return members, points
        points += db.write(lambda s, ids=ids: work(s, ids))  # type: ignore[misc]
        members += len(ids)
        after = ids[-1]
        if progress:
            progress(len(ids))


def release_pending(db: Database, as_of: datetime, progress: Progress | None = None) -> dict[str, int]:
    def find(s: Session, after: uuid.UUID | None) -> list[uuid.UUID]:
        stmt = select(PointLot.member_id).where(PointLot.pending.is_(True), PointLot.available_at <= as_of)
        if after is not None:
            stmt = stmt.where(PointLot.member_id > after)
        return list(s.scalars(stmt.group_by(PointLot.member_id).order_by(PointLot.member_id).limit(CHUNK)))

    def work(s: Session, ids: list[uuid.UUID]) -> int:
        accounts = _lock_accounts(s, ids)
        # A member in debt has the released points settle the debt lot by lot; that is rare, so
        # they take the per-member path. Everyone else moves in two statements.
        in_debt = [a for a in accounts.values() if a.available < 0]
        released = sum(ledger.release_matured(s, a, as_of) for a in in_debt)
        plain = [m for m in ids if m in accounts and accounts[m].available >= 0]
        if plain:
            matured = (PointLot.pending.is_(True), PointLot.available_at <= as_of)
            total = (
                select(func.coalesce(func.sum(PointLot.remaining), 0))
                .where(PointLot.member_id == PointAccount.member_id, *matured)
                .scalar_subquery()
            )
            released += int(
                s.scalar(
                    select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
                        PointLot.member_id.in_(plain), *matured
                    )
                )
                or 0
            )
            s.execute(
                update(PointAccount)
                .where(PointAccount.member_id.in_(plain))
                .values(
                    available=PointAccount.available + total,
                    pending=PointAccount.pending - total,
                    updated_at=clock.now(),
                ),
                execution_options={"synchronize_session": False},
            )
            s.execute(
                update(PointLot).where(PointLot.member_id.in_(plain), *matured).values(pending=False),
                execution_options={"synchronize_session": False},
            )
        return released

    members, points = _chunks(db, find, work, progress)
    return {"members": members, "points": points}


def expire_points(db: Database, as_of: datetime, progress: Progress | None = None) -> dict[str, int]:
    due = (PointLot.remaining > 0, PointLot.expires_at.is_not(None), PointLot.expires_at <= as_of)

    def find(s: Session, after: uuid.UUID | None) -> list[uuid.UUID]:
        stmt = select(PointLot.member_id).where(*due)
        if after is not None:
            stmt = stmt.where(PointLot.member_id > after)
        return list(s.scalars(stmt.group_by(PointLot.member_id).order_by(PointLot.member_id).limit(CHUNK)))

    def work(s: Session, ids: list[uuid.UUID]) -> int:
        _lock_accounts(s, ids)
        now = clock.now()
        rows = s.execute(
            select(
                PointAccount.member_id,
                PointAccount.available,
                PointAccount.pending,
                func.sum(case((PointLot.pending.is_(True), PointLot.remaining), else_=0)),
                func.sum(case((PointLot.pending.is_(True), 0), else_=PointLot.remaining)),
            )
            .join(PointLot, PointLot.member_id == PointAccount.member_id)
            .where(PointAccount.member_id.in_(ids), *due)
            .group_by(PointAccount.member_id, PointAccount.available, PointAccount.pending)
        ).all()
        entries = []
        for member_id, available, pending, from_pending, from_available in rows:
            amount = int(from_pending) + int(from_available)
            entries.append(
                {
                    "id": new_id(),
                    "member_id": member_id,
                    "kind": "expire",
                    "points": -amount,
                    "balance_after": available + pending - amount,
                    "created_at": now,
                    "reason": "points expired",
                    "actor_kind": "system",
                }
            )
        if not entries:
            return 0
        s.execute(insert(LedgerEntry), entries)
        pending_part = (
            select(func.coalesce(func.sum(case((PointLot.pending.is_(True), PointLot.remaining), else_=0)), 0))
            .where(PointLot.member_id == PointAccount.member_id, *due)
            .scalar_subquery()
        )
        all_part = (
            select(func.coalesce(func.sum(PointLot.remaining), 0))
            .where(PointLot.member_id == PointAccount.member_id, *due)
            .scalar_subquery()
        )
        s.execute(
            update(PointAccount)
            .where(PointAccount.member_id.in_(ids))
            .values(
                pending=PointAccount.pending - pending_part,
                available=PointAccount.available - (all_part - pending_part),
                expired=PointAccount.expired + all_part,
                updated_at=now,
            ),
            execution_options={"synchronize_session": False},
        )
        s.execute(
            update(PointLot).where(PointLot.member_id.in_(ids), *due).values(remaining=0),
            execution_options={"synchronize_session": False},
        )
        return sum(-int(e["points"]) for e in entries)

    members, points = _chunks(db, find, work, progress)
    return {"members": members, "points": points}
