from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class Tier(Base):
    __tablename__ = "tiers"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    # Decimal factor as text ("1.5"): exact, and never summed in SQL.
    multiplier: Mapped[str] = mapped_column(String(20), default="1")
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)


class TierChange(Base):
    """Tier history: every upgrade and downgrade of a member, and why."""

    __tablename__ = "tier_changes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    from_code: Mapped[str | None] = mapped_column(String(40))
    to_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(40))  # purchase | requalification | configuration | staff
    metric_value: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
