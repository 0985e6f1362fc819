from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class SignInCode(Base):
    """One sign-in to the member portal by a one-time code, from the request to its use.

    Only keyed hashes are kept: of the code, and of the address it was asked for, which rate-limits
    requests for an address whether or not a member has it (so the answers never tell which).
    `member_id` is empty when no member has the address; such a code can never be right.
    """

    __tablename__ = "portal_sign_in_codes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    address_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    sends: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_portal_sign_in_codes_address_hash_created_at", "address_hash", "created_at"),)


class PortalSession(Base):
    """A member signed in to the portal. The cookie carries a random token; only its hash is kept."""

    __tablename__ = "portal_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeletionRequest(Base):
    """A member's request to delete their account, kept until staff (or the erasure job) act on it."""

    __tablename__ = "deletion_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))  # pending | done | cancelled
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
