from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class PointAccount(Base):
    """The balance cache of one member, updated in the same transaction as the entries.

    available + pending always equals the sum of the member's ledger entries, and the counters
    equal the sums of their kinds; `patron ledger verify` proves it. `available` may be negative
    after a return whose points were already spent: that debt is paid from the next points.
    """

    __tablename__ = "point_accounts"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)  # earn + bonus - reverse
    redeemed: Mapped[int] = mapped_column(BigInteger, default=0)  # redeem - restore
    expired: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    """One immutable movement of points. Never updated, never deleted."""

    __tablename__ = "ledger_entries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(10))  # earn bonus redeem adjust expire reverse restore
    points: Mapped[int] = mapped_column(BigInteger)  # signed
    balance_after: Mapped[int] = mapped_column(BigInteger)  # available + pending after this entry
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reason: Mapped[str | None] = mapped_column(String(500))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        Index("ix_ledger_entries_member_id_id", "member_id", "id"),
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
    )


class PointLot(Base):
    """What is left of one credit of points, and when it becomes spendable and expires.

    Spending takes from the lots that expire first; expiry takes only what remains.
    """

    __tablename__ = "point_lots"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"))
    entry_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("ledger_entries.id"))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[bool] = mapped_column(Boolean)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # Not (member_id, remaining): an index on `remaining` would make every spend and expiry of a
        # lot a full update of all its indexes instead of a heap-only one on PostgreSQL.
        Index("ix_point_lots_member_id", "member_id"),
        Index("ix_point_lots_expires_at", "expires_at"),
        Index("ix_point_lots_pending_available_at", "pending", "available_at"),
        Index("ix_point_lots_transaction_id", "transaction_id"),
    )


class LotAllocation(Base):
    """Which lots a debit took its points from, so a later restore gives them back to the same lots."""

    __tablename__ = "lot_allocations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    entry_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("ledger_entries.id"), index=True)
    lot_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("point_lots.id"))
    points: Mapped[int] = mapped_column(BigInteger)
