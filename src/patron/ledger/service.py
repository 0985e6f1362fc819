"""The points ledger: append-only entries, lots, and the balance cache, always moved together.

Every function here expects the member's PointAccount to be locked by `lock_account` first (see the
locking policy in patron/db.py): the caller reads the balance, decides, and writes while nobody else
can. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.db import Base, insert_into
from patron.errors import InsufficientPoints, NotFound, ValidationFailed
from patron.kit import clock
from patron.kit.ids import new_id
from patron.kit.pagination import page
from patron.ledger import policy
from patron.ledger.models import LedgerEntry, LotAllocation, PointAccount, PointLot
from patron.ledger.schemas import AdjustmentIn, EntryOut, Expiring, PointsOut, RedemptionIn

CREDIT_KINDS = ("earn", "bonus", "adjust", "restore")
DEBIT_KINDS = ("redeem", "adjust", "expire", "reverse")


def lock_account(session: Session, member_id: uuid.UUID) -> PointAccount:
    account = session.get(PointAccount, member_id, with_for_update=True, populate_existing=True)
    if account is None:  # members enrolled before accounts existed; created on first use
        account = PointAccount(member_id=member_id, updated_at=clock.now())
        session.add(account)
        session.flush()
    return account


def get_account(session: Session, member_id: uuid.UUID) -> PointAccount:
    account = session.get(PointAccount, member_id)
    return account or PointAccount(
        member_id=member_id, available=0, pending=0, lifetime_earned=0, redeemed=0, expired=0, updated_at=clock.now()
    )


@dataclass(frozen=True)
class Source:
    """Why points move: the ledger entry's references."""

    actor: Actor
    transaction_id: uuid.UUID | None = None
    rule_id: uuid.UUID | None = None
    reason: str | None = None


def _write(session: Session, model: type[Base], row: dict[str, Any]) -> None:
    """Insert a new entry or lot at once with a Core statement: on the till's hot path the ORM's
    unit of work costs more than the rest of the purchase. Whatever later changes a lot loads it
    again. Objects still pending in the session are flushed first, since the row may refer to them
    (a member enrolled and welcomed in the same transaction)."""
    if session.new:
        session.flush()
    session.connection().execute(insert_into(model.__table__), row)


def _entry(
    session: Session, account: PointAccount, kind: str, points: int, src: Source, expires: datetime | None = None
) -> LedgerEntry:
    now = clock.now()
    row: dict[str, Any] = {
        "id": new_id(),
        "member_id": account.member_id,
        "kind": kind,
        "points": points,
        "balance_after": account.available + account.pending,
        "created_at": now,
        "transaction_id": src.transaction_id,
        "rule_id": src.rule_id,
        "reason": src.reason,
        "expires_at": expires,
        "actor_kind": src.actor.kind,
        "actor_id": src.actor.id,
    }
    account.updated_at = now
    _write(session, LedgerEntry, row)
    return LedgerEntry(**row)


# Spending order: soonest expiry first, never-expiring last, then oldest first.
SPEND_ORDER = (case((PointLot.expires_at.is_(None), 1), else_=0), PointLot.expires_at, PointLot.id)


def _spend_key(lot: PointLot) -> tuple[bool, datetime, uuid.UUID]:
    """SPEND_ORDER for lots already loaded."""
    return (lot.expires_at is None, lot.expires_at or datetime.min.replace(tzinfo=UTC), lot.id)


def _open_lots(session: Session, member_id: uuid.UUID, *, pending: bool = False) -> Sequence[PointLot]:
    """Lots with points left, in spending order."""
    return session.scalars(
        select(PointLot)
        .where(PointLot.member_id == member_id, PointLot.remaining > 0, PointLot.pending == pending)
        .order_by(*SPEND_ORDER)
    ).all()


def _take(session: Session, entry: LedgerEntry, lots: Sequence[PointLot], points: int) -> int:
    """Take up to `points` from `lots` in order, recording where they came from; returns what was taken."""
    taken = 0
    for lot in lots:
        if taken == points:
            break
        part = min(lot.remaining, points - taken)
        if part <= 0:
            continue
        lot.remaining -= part
        taken += part
        session.add(LotAllocation(entry_id=entry.id, lot_id=lot.id, points=part))
    return taken


def credit(
    session: Session,
    account: PointAccount,
    kind: str,
    points: int,
    src: Source,
    *,
    available_at: datetime,
    expires_at: datetime | None,
) -> LedgerEntry:
    """Add points as a new lot: pending until `available_at`, then spendable until `expires_at`."""
    assert kind in ("earn", "bonus", "adjust") and points > 0
    now = clock.now()
    pending = available_at > now
    available_before = account.available
    if pending:
        account.pending += points
    else:
        account.available += points
    if kind in ("earn", "bonus"):
        account.lifetime_earned += points
    entry = _entry(session, account, kind, points, src, expires_at)
    remaining = points
    if not pending and available_before < 0:
        remaining -= min(points, -available_before)  # see _absorb_debt
    _write(
        session,
        PointLot,
        {
            "id": new_id(),
            "member_id": account.member_id,
            "entry_id": entry.id,
            "transaction_id": src.transaction_id,
            "points": points,
            "remaining": remaining,
            "pending": pending,
            "available_at": available_at,
            "expires_at": expires_at,
            "created_at": now,
        },
    )
    return entry


def _absorb_debt(lots: Sequence[PointLot], available_before: int) -> None:
    """A negative balance (a return of points already spent) is paid from points as they become
    spendable: the new lots give up what the member owed, so that the spendable lots always hold
    exactly max(available, 0). Like any spending, it takes the lots in spending order, which the
    callers pass."""
    debt = -available_before
    for lot in lots:
        if debt <= 0:
            return
        part = min(lot.remaining, debt)
        lot.remaining -= part
        debt -= part


def debit(session: Session, account: PointAccount, kind: str, points: int, src: Source) -> LedgerEntry:
    """Spend available points, soonest-expiring first. Refused whole when the balance is short."""
    assert kind in ("redeem", "adjust") and points > 0
    if account.available < points:
        raise InsufficientPoints(f"{points} points requested, {max(account.available, 0)} available")
    account.available -= points
    if kind == "redeem":
        account.redeemed += points
    entry = _entry(session, account, kind, -points, src)
    _take(session, entry, _open_lots(session, account.member_id), points)
    return entry


def reverse_earning(
    session: Session, account: PointAccount, transaction_id: uuid.UUID, points: int, src: Source
) -> LedgerEntry:
    """Take back points a transaction earned (a return). They come from what is left of that
    transaction's own lots first, then from the member's other points; if those were spent too,
    the balance goes negative."""
    assert points > 0
    own = session.scalars(
        select(PointLot)
        .where(PointLot.transaction_id == transaction_id, PointLot.remaining > 0)
        .order_by(PointLot.pending.desc(), PointLot.id)
    ).all()
    from_pending = 0
    left = points
    for lot in own:
        part = min(lot.remaining, left)
        if lot.pending:
            from_pending += part
        left -= part
    account.pending -= from_pending
    account.available -= points - from_pending
    account.lifetime_earned -= points
    entry = _entry(session, account, "reverse", -points, src)
    taken = _take(session, entry, own, points)
    if taken < points:
        _take(session, entry, _open_lots(session, account.member_id), points - taken)
    return entry


def restore(
    session: Session, account: PointAccount, redeem_entry_ids: Sequence[uuid.UUID], points: int, src: Source
) -> LedgerEntry:
    """Give back redeemed points (a return) to the lots they were taken from, latest-expiring first,
    so they keep their original expiry."""
    assert points > 0
    available_before = account.available
    account.available += points
    account.redeemed -= points
    entry = _entry(session, account, "restore", points, src)
    allocations = session.execute(
        select(LotAllocation, PointLot)
        .join(PointLot, PointLot.id == LotAllocation.lot_id)
        .where(LotAllocation.entry_id.in_(redeem_entry_ids))
        .order_by(case((PointLot.expires_at.is_(None), 0), else_=1), PointLot.expires_at.desc(), PointLot.id.desc())
    ).all()
    restored_before = _restored_per_lot(session, redeem_entry_ids)
    left = points
    touched = []
    for alloc, lot in allocations:
        room = alloc.points - restored_before.get(lot.id, 0)
        part = min(room, left)
        if part <= 0:
            continue
        lot.remaining += part
        session.add(LotAllocation(entry_id=entry.id, lot_id=lot.id, points=-part))
        touched.append(lot)
        left -= part
        if left == 0:
            break
    if available_before < 0:
        _absorb_debt(sorted(touched, key=_spend_key), available_before)
    return entry


def _restored_per_lot(session: Session, redeem_entry_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Points already given back to each lot by earlier restores of the same redemptions."""
    restores = select(LedgerEntry.id).where(
        LedgerEntry.kind == "restore",
        LedgerEntry.transaction_id.in_(select(LedgerEntry.transaction_id).where(LedgerEntry.id.in_(redeem_entry_ids))),
    )
    rows = session.execute(
        select(LotAllocation.lot_id, func.sum(-LotAllocation.points))
        .where(LotAllocation.entry_id.in_(restores))
        .group_by(LotAllocation.lot_id)
    ).all()
    return {lot_id: int(total) for lot_id, total in rows}


def release_matured(session: Session, account: PointAccount, now: datetime) -> int:
    """Make this member's pending lots whose hold has passed spendable; returns the points released."""
    if account.pending == 0:
        return 0
    lots = session.scalars(
        select(PointLot)
        .where(PointLot.member_id == account.member_id, PointLot.pending.is_(True), PointLot.available_at <= now)
        .order_by(*SPEND_ORDER)
    ).all()
    released = 0
    for lot in lots:
        lot.pending = False
        released += lot.remaining
    available_before = account.available
    account.pending -= released
    account.available += released
    if available_before < 0:
        _absorb_debt(lots, available_before)
    return released


def entries(
    session: Session, member_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[Sequence[LedgerEntry], str | None]:
    stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    return page(session, stmt, LedgerEntry.id, limit=limit, cursor=cursor)


def expiring(session: Session, member_id: uuid.UUID, *, limit: int = 10) -> list[tuple[int, datetime]]:
    rows = session.execute(
        select(func.sum(PointLot.remaining), PointLot.expires_at)
        .where(PointLot.member_id == member_id, PointLot.remaining > 0, PointLot.expires_at.is_not(None))
        .group_by(PointLot.expires_at)
        .order_by(PointLot.expires_at)
        .limit(limit)
    ).all()
    return [(int(points), expires) for points, expires in rows if expires is not None]


def transaction_entries(session: Session, transaction_id: uuid.UUID, kind: str) -> Sequence[LedgerEntry]:
    return session.scalars(
        select(LedgerEntry).where(LedgerEntry.transaction_id == transaction_id, LedgerEntry.kind == kind)
    ).all()


def entry_out(entry: LedgerEntry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        kind=entry.kind,
        points=entry.points,
        balance_after=entry.balance_after,
        created_at=entry.created_at,
        transaction_id=entry.transaction_id,
        rule_id=entry.rule_id,
        reason=entry.reason,
        expires_at=entry.expires_at,
    )


def summary(session: Session, member_id: uuid.UUID) -> PointsOut:
    account = get_account(session, member_id)
    return PointsOut(
        available=account.available,
        pending=account.pending,
        lifetime_earned=account.lifetime_earned,
        redeemed=account.redeemed,
        expired=account.expired,
        expiring=[Expiring(points=p, expires_at=at) for p, at in expiring(session, member_id)],
    )


def adjust(session: Session, actor: Actor, member_id: uuid.UUID, data: AdjustmentIn) -> EntryOut:
    """A staff correction, with its reason. Taking points below zero is refused."""
    from patron.members import service as members
    from patron.program import service as program_service

    if data.points == 0:
        raise ValidationFailed("points must not be zero", field="points")
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    account = lock_account(session, member.id)
    now = clock.now()
    release_matured(session, account, now)
    src = Source(actor=actor, reason=data.reason)
    if data.points > 0:
        program = program_service.get(session)
        entry = credit(
            session, account, "adjust", data.points, src, available_at=now, expires_at=policy.expires_at(program, now)
        )
    else:
        entry = debit(session, account, "adjust", -data.points, src)
    audit.record(session, actor, "points.adjust", "member", member.id, {"points": data.points, "reason": data.reason})
    return entry_out(entry)


def redeem(session: Session, actor: Actor, member_id: uuid.UUID, data: RedemptionIn) -> EntryOut:
    from patron.members import service as members

    member = members.get(session, member_id)
    members.require_active(member)
    account = lock_account(session, member.id)
    release_matured(session, account, clock.now())
    entry = debit(session, account, "redeem", data.points, Source(actor=actor, reason=data.reason))
    audit.record(session, actor, "points.redeem", "member", member.id, {"points": data.points})
    return entry_out(entry)
