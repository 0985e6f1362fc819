"""Proof that every cached balance equals its entries and its lots, in a few set-wise queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from patron.ledger.models import LedgerEntry, PointAccount, PointLot


@dataclass(frozen=True)
class Mismatch:
    member_id: uuid.UUID
    check: str
    cached: int
    actual: int


def _sum_kind(*kinds: str, sign: int = 1) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((LedgerEntry.kind.in_(kinds), LedgerEntry.points * sign), else_=0)), 0)


def verify(session: Session, limit: int = 100) -> tuple[int, list[Mismatch]]:
    """Checks every account; returns how many were checked and up to `limit` mismatches."""
    entries = (
        select(
            LedgerEntry.member_id.label("member_id"),
            func.sum(LedgerEntry.points).label("total"),
            _sum_kind("earn", "bonus", "reverse").label("earned"),
            _sum_kind("redeem", "restore", sign=-1).label("redeemed"),
            _sum_kind("expire", sign=-1).label("expired"),
        )
        .group_by(LedgerEntry.member_id)
        .subquery()
    )
    lots = (
        select(
            PointLot.member_id.label("member_id"),
            func.sum(case((PointLot.pending.is_(True), PointLot.remaining), else_=0)).label("pending"),
            func.sum(case((PointLot.pending.is_(True), 0), else_=PointLot.remaining)).label("spendable"),
        )
        .group_by(PointLot.member_id)
        .subquery()
    )
    a = PointAccount
    zero = literal(0)
    total = func.coalesce(entries.c.total, zero)
    checks: dict[str, tuple[ColumnElement[int] | InstrumentedAttribute[int], ColumnElement[int]]] = {
        "balance = sum of entries": (a.available + a.pending, total),
        "lifetime_earned": (a.lifetime_earned, func.coalesce(entries.c.earned, zero)),
        "redeemed": (a.redeemed, func.coalesce(entries.c.redeemed, zero)),
        "expired": (a.expired, func.coalesce(entries.c.expired, zero)),
        "pending = pending lots": (a.pending, func.coalesce(lots.c.pending, zero)),
        "spendable lots = max(available, 0)": (
            case((a.available > 0, a.available), else_=0),
            func.coalesce(lots.c.spendable, zero),
        ),
    }
    checked = int(session.scalar(select(func.count()).select_from(a)) or 0)
    found: list[Mismatch] = []
    for name, (cached, actual) in checks.items():
        stmt = (
            select(a.member_id, cached, actual)
            .select_from(a)
            .outerjoin(entries, entries.c.member_id == a.member_id)
            .outerjoin(lots, lots.c.member_id == a.member_id)
            .where(cached != actual)
            .limit(limit - len(found))
        )
        if len(found) >= limit:
            break
        for member_id, c, v in session.execute(stmt):
            found.append(Mismatch(member_id, name, int(c), int(v)))
    # Entries of members who have no account at all.
    orphans = session.execute(
        select(entries.c.member_id, entries.c.total)
        .outerjoin(a, a.member_id == entries.c.member_id)
        .where(a.member_id.is_(None), entries.c.total != 0)
        .limit(max(limit - len(found), 0))
    ).all()
    found.extend(Mismatch(m, "account missing", 0, int(t)) for m, t in orphans)
    return checked, found
