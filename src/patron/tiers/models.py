from __future__ import annotations

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base


class Tier(Base):
    __tablename__ = "tiers"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    # Decimal factor as text ("1.5"): exact, and never summed in SQL.
    multiplier: Mapped[str] = mapped_column(String(20), default="1")
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)
