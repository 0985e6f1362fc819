from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class Card(Base):
    """A loyalty card (number stored) or a linked bank card (keyed hash and last four only)."""

    __tablename__ = "cards"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10))  # loyalty | bank
    number: Mapped[str | None] = mapped_column(String(19), unique=True)
    pan_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    last4: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(10))  # issued | active | blocked | replaced
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("cards.id"))
    block_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
