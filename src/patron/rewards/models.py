from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class Reward(Base):
    """An entry of the rewards catalogue: what a member may claim for points, and who may."""

    __tablename__ = "rewards"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(20))  # percent_discount amount_discount free_item gift privilege
    # The terms, as each kind needs them: the percent as exact decimal text, money in minor units
    # of the programme's currency.
    percent: Mapped[str | None] = mapped_column(String(20))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    max_discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    sku: Mapped[str | None] = mapped_column(String(100))
    cost_points: Mapped[int] = mapped_column(BigInteger)
    # What is left to claim (a claim takes one, a cancellation gives it back); NULL is unlimited.
    stock: Mapped[int | None] = mapped_column(BigInteger)
    limit_per_member: Mapped[int | None] = mapped_column(Integer)
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    segments: Mapped[list[str]] = mapped_column(JSON, default=list)
    valid_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)  # coupons issued and not cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Coupon(Base):
    """One claim of a reward: a code the member shows at the till.

    The reward's terms are copied at claim time, so a later change to the catalogue never changes
    what a member already paid for. `status` holds issued, used or cancelled; an issued coupon
    past `expires_at` reads as expired without anything writing it.
    """

    __tablename__ = "coupons"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(20), unique=True)  # normalised: no dashes, upper case
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("rewards.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(20))
    percent: Mapped[str | None] = mapped_column(String(20))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    max_discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    sku: Mapped[str | None] = mapped_column(String(100))
    points_spent: Mapped[int] = mapped_column(BigInteger)
    # The ledger entry that paid for it, so a cancellation gives the points back to the same lots.
    redeem_entry_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("ledger_entries.id"))
    claim_external_id: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # No foreign key: the purchase row is written after its coupons are marked, in one transaction.
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_coupons_member_id_id", "member_id", "id"),
        Index("ix_coupons_reward_id_member_id", "reward_id", "member_id"),
        Index("ix_coupons_transaction_id", "transaction_id"),
    )
