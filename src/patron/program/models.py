from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime

PROGRAM_ID = 1


class Program(Base):
    """The loyalty programme: one row per installation."""

    __tablename__ = "program"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=PROGRAM_ID)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    phone_region: Mapped[str] = mapped_column(String(2))
    point_value_minor: Mapped[int] = mapped_column(Integer)
    pending_days: Mapped[int] = mapped_column(Integer, default=0)
    expiry_policy: Mapped[str] = mapped_column(String(20), default="none")
    expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rules_version: Mapped[str] = mapped_column(String(40))
    card_prefix: Mapped[str] = mapped_column(String(8))
    tier_metric: Mapped[str] = mapped_column(String(10), default="points")
    tier_window_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Days a member keeps a tier after reaching it before requalification may move them down;
    # NULL when the ladder was put without it (no grace), so GET /v1/tiers echoes what was given.
    tier_grace_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Bumped by every change to rules or tiers, so processes can cache them safely.
    config_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
