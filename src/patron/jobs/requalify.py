"""requalify-tiers: every member's tier recomputed from the ladder's metric over the window that
ends at `as_of`, set-wise.

Purchases only ever move a member up (tiers/service.py `after_purchase`); this job moves them both
ways. A member goes down only once the ladder's `grace_days` have passed since they reached their
current tier (their last tier change into it, or enrolment when there is none); upgrades are never
held back. Each move is a `tier_changes` row with reason "requalification", dated `as_of`.

How it stays cheap over a million members:

* One query finds the members who must move: the metric of every member, grouped in one pass
  over the ledger (or the purchases), joined to the members, compared with the ladder in SQL.
  Only the members whose tier changes come back, streamed.
* They are moved CHUNK at a time, each chunk one short write transaction: lock their point
  accounts in key order (every path that changes a tier holds the account lock: see
  patron/db.py), ask the same question again for them alone, since a purchase may have moved
  them since the scan, then write the history rows and the new tiers in one statement each
  (PostgreSQL: from arrays through unnest; SQLite: executemany and one UPDATE per tier).

Running the job again with the same `as_of` finds nobody to move.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from patron.db import Database, among, by_key_only
from patron.kit.ids import new_id
from patron.kit.money import minor_digits
from patron.ledger.models import LedgerEntry, PointAccount
from patron.members.models import Member
from patron.program import service as program_service
from patron.program.models import Program
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.transactions.models import Transaction

CHUNK = 5000
REASON = "requalification"
# Plain tables: the writes go straight to SQL, without the ORM's per-row bookkeeping.
TIER_CHANGES = cast(Table, TierChange.__table__)
MEMBERS = cast(Table, Member.__table__)
_ARRAY_TYPES: dict[str, Any] = {
    "id": Uuid(),
    "member_id": Uuid(),
    "from_code": String(),
    "to_code": String(),
    "metric_value": BigInteger(),
}
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Ladder:
    """What one run needs to know about the ladder, read once at its start."""

    codes: tuple[str, ...]  # lowest first
    thresholds: tuple[int, ...]  # in the metric's units (minor units for spend)
    metric: str
    since: datetime | None
    grace_until: datetime | None  # a tier reached after this instant is still in its grace


@dataclass(frozen=True)
class Move:
    member_id: uuid.UUID
    from_code: str
    to_code: str
    value: int
    up: bool


def _ladder(session: Session, as_of: datetime) -> Ladder:
    program: Program = program_service.get(session)
    steps = tiers.ladder(session)
    scale = 10 ** minor_digits(program.currency) if program.tier_metric == "spend" else 1
    grace = program.tier_grace_days or 0
    return Ladder(
        codes=tuple(t.code for t in steps),
        thresholds=tuple(t.threshold * scale for t in steps),
        metric=program.tier_metric,
        since=as_of - timedelta(days=program.tier_window_days) if program.tier_window_days else None,
        grace_until=as_of - timedelta(days=grace) if grace else None,
    )


def _metric(ladder: Ladder, as_of: datetime, only: ColumnElement[bool] | None) -> Any:
    """Each member's metric over the window ending at `as_of`, grouped: what tiers/service.py
    `metric_values` computes for a list of members at the time of a purchase."""
    if ladder.metric == "points":
        e = LedgerEntry
        conds = [e.kind.in_(("earn", "reverse")), e.created_at <= as_of]
        if ladder.since is not None:
            conds.append(e.created_at >= ladder.since)
        if only is not None:
            conds.append(only)
        stmt = select(e.member_id.label("member_id"), func.sum(e.points).label("v")).where(*conds)
        return stmt.group_by(e.member_id).subquery("metric")
    t = Transaction
    measure = func.count() if ladder.metric == "visits" else func.sum(t.amount_due_minor - t.returned_net_minor)
    conds = [t.occurred_at <= as_of]
    if ladder.since is not None:
        conds.append(t.occurred_at >= ladder.since)
    if only is not None:
        conds.append(only)
    stmt = select(t.member_id.label("member_id"), measure.label("v")).where(*conds)
    return stmt.group_by(t.member_id).subquery("metric")


def _moves_statement(
    ladder: Ladder,
    as_of: datetime,
    dialect: str,
    only: Sequence[uuid.UUID] | None = None,
    *,
    upgrades_only: bool = False,
) -> Select[tuple[uuid.UUID, str, Any, int, int]]:
    """(member, current code, metric, target rank, current rank) of the members whose tier
    changes: all of them, or just `only`; with `upgrades_only`, the ones who move up."""
    metric = _metric(
        ladder,
        as_of,
        among(LedgerEntry.member_id if ladder.metric == "points" else Transaction.member_id, only, dialect)
        if only is not None
        else None,
    )
    value = func.coalesce(metric.c.v, 0)
    # Highest tier first: the first threshold the value reaches is the member's tier.
    steps = [(value >= ladder.thresholds[i], i) for i in range(len(ladder.codes) - 1, 0, -1)]
    target: ColumnElement[int] = case(*steps, else_=0) if steps else literal(0)
    # A code that is not on the ladder (put_ladder moves such members to the base) ranks below it.
    current = case({code: i for i, code in enumerate(ladder.codes)}, value=Member.tier_code, else_=-1)
    may_go_down: ColumnElement[bool] = true()
    if ladder.grace_until is not None:
        reached = (
            select(func.max(TierChange.changed_at))
            .where(TierChange.member_id == Member.id, TierChange.to_code == Member.tier_code)
            .scalar_subquery()
        )
        may_go_down = func.coalesce(reached, Member.enrolled_at) <= ladder.grace_until
    stmt = (
        select(Member.id, Member.tier_code, value, target, current)
        .select_from(Member)
        .outerjoin(metric, metric.c.member_id == Member.id)
        .where(Member.status != "erased", target != current, or_(target > current, may_go_down))
    )
    if upgrades_only:
        stmt = stmt.where(target > current)
    if only is not None:
        stmt = stmt.where(among(Member.id, only, dialect))
    return stmt


def _move(ladder: Ladder, row: Any) -> Move:
    member_id, code, v, to, cur = row
    return Move(member_id, code, ladder.codes[to], max(int(v), 0), to > cur)


def _apply(
    session: Session,
    dialect: str,
    ladder: Ladder,
    as_of: datetime,
    ids: list[uuid.UUID],
    *,
    upgrades_only: bool = False,
    reason: str = REASON,
) -> list[Move]:
    """Move these members, if they still must move once their accounts are locked."""
    by_key_only(session)
    session.execute(
        select(PointAccount.member_id)
        .where(among(PointAccount.member_id, ids, dialect))
        .order_by(PointAccount.member_id)
        .with_for_update()
    ).all()
    again = _moves_statement(ladder, as_of, dialect, only=ids, upgrades_only=upgrades_only)
    moves = [_move(ladder, row) for row in session.execute(again)]
    if not moves:
        return []
    ids_out = [new_id() for _ in moves]
    if dialect == "postgresql":
        history: dict[str, list[Any]] = {
            "id": ids_out,
            "member_id": [m.member_id for m in moves],
            "from_code": [m.from_code for m in moves],
            "to_code": [m.to_code for m in moves],
            "metric_value": [m.value for m in moves],
        }
        rows = (
            func.unnest(*(bindparam(None, history[k], type_=ARRAY(_ARRAY_TYPES[k])) for k in history))
            .table_valued(*history)
            .render_derived(name="moves")
        )
        as_of_value = literal(as_of, type_=TierChange.changed_at.type)
        session.execute(
            insert(TIER_CHANGES).from_select(
                [*history, "reason", "changed_at"],
                select(*(rows.c[k] for k in history), literal(reason), as_of_value),
            )
        )
        session.execute(update(MEMBERS).where(MEMBERS.c.id == rows.c.member_id).values(tier_code=rows.c.to_code))
        return moves
    session.connection().execute(
        insert(TIER_CHANGES),
        [
            {
                "id": i,
                "member_id": m.member_id,
                "from_code": m.from_code,
                "to_code": m.to_code,
                "reason": reason,
                "metric_value": m.value,
                "changed_at": as_of,
            }
            for i, m in zip(ids_out, moves, strict=True)
        ],
    )
    by_target: dict[str, list[uuid.UUID]] = {}
    for m in moves:
        by_target.setdefault(m.to_code, []).append(m.member_id)
    for code, members in by_target.items():
        session.execute(update(MEMBERS).where(MEMBERS.c.id.in_(members)).values(tier_code=code))
    return moves


def place_after_ladder_change(session: Session, now: datetime) -> int:
    """Upgrade, inside the transaction that replaced the ladder, everyone whose metric now reaches
    a higher tier: upgrades are immediate, whatever caused them. Nobody moves down here (that is
    requalification's); members whose tier left the ladder were put on the first one and rise
    from there. Returns how many moved."""
    ladder = _ladder(session, now)
    dialect = session.get_bind().dialect.name
    found = sorted(row[0] for row in session.execute(_moves_statement(ladder, now, dialect, upgrades_only=True)))
    moved = 0
    for i in range(0, len(found), CHUNK):
        ids = found[i : i + CHUNK]
        moved += len(_apply(session, dialect, ladder, now, ids, upgrades_only=True, reason="configuration"))
    return moved


def requalify_tiers(db: Database, as_of: datetime, progress: Progress | None = None) -> dict[str, int]:
    ladder = db.read(lambda s: _ladder(s, as_of))
    members = int(db.read(lambda s: s.scalar(select(func.count()).where(Member.status != "erased"))) or 0)

    def scan(session: Session) -> tuple[int, int, int]:
        up = down = seen = 0
        found = session.execute(_moves_statement(ladder, as_of, db.dialect), execution_options={"yield_per": CHUNK})
        for batch in found.partitions():
            ids = sorted(row[0] for row in batch)
            moves = db.write(lambda s, ids=ids: _apply(s, db.dialect, ladder, as_of, ids))  # type: ignore[misc]
            up += sum(m.up for m in moves)
            down += sum(not m.up for m in moves)
            seen += len(ids)
            if progress:
                progress(len(ids))
        return up, down, seen

    upgraded, downgraded, seen = db.read(scan)
    if progress and members > seen:
        progress(members - seen)  # everyone else was looked at by the scan, and stays
    return {"members": members, "upgraded": upgraded, "downgraded": downgraded}
