from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class EarningRule(Base):
    __tablename__ = "earning_rules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    points: Mapped[int] = mapped_column(Integer, default=0)
    per_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    skus: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    factor: Mapped[str | None] = mapped_column(String(20))  # exact decimal text
    event_type: Mapped[str | None] = mapped_column(String(60))
    max_points: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # starts_at/ends_at as RFC 3339 text, min_total in minor units, the rest as lists.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The form the caller used for sku/category (one string or a list), echoed back as given.
    shape: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Rules named in past breakdowns are kept; a deleted rule is only hidden.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_earning_rules_kind_active", "kind", "active"),)
