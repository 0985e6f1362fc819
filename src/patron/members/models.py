from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    # "first last", case-folded in Python: SQLite's lower() knows only ASCII, and names are not.
    name_key: Mapped[str | None] = mapped_column(String(201))
    # Normalised: lower-cased email, E.164 phone. Unique among members who still hold them;
    # erasure sets them to NULL.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(2), default="en")
    status: Mapped[str] = mapped_column(String(10), default="active")
    channel: Mapped[str] = mapped_column(String(20))
    location: Mapped[str | None] = mapped_column(String(40))
    tier_code: Mapped[str] = mapped_column(String(40))
    referral_code: Mapped[str] = mapped_column(String(12), unique=True)
    referred_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("members.id"))
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Current consent; the history with versions and channels is in consent_events.
    rules_version: Mapped[str] = mapped_column(String(40))
    rules_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    marketing_email: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_push: Mapped[bool] = mapped_column(Boolean, default=False)
    block_reason: Mapped[str | None] = mapped_column(String(500))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_members_last_name", "last_name"),
        Index("ix_members_name_key", "name_key"),
        Index("ix_members_enrolled_at", "enrolled_at"),
    )


class ConsentEvent(Base):
    """Append-only record of every consent given or withdrawn: what, which version, when, how."""

    __tablename__ = "consent_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    granted: Mapped[bool] = mapped_column(Boolean)
    rules_version: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
