from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class MailMessage(Base):
    """One email: the outbox row written in the transaction that wants it sent, and its delivery log.

    status: `queued` (waiting for its next attempt at `next_attempt_at`), `sent` (an SMTP server
    accepted it), `mailbox` (no SMTP server is configured in development: the message stays here,
    in the development mailbox the back office shows), `failed` (gave up after the last attempt).
    """

    __tablename__ = "mail_messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(2))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    # A sensitive body (a sign-in code) is blanked once an SMTP server has taken it.
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the message is due; while an attempt is under way, the end of that attempt's lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_mail_messages_status_next_attempt_at", "status", "next_attempt_at"),)


class MailAttempt(Base):
    """One delivery attempt of a message and how it ended: the retries, written down."""

    __tablename__ = "mail_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("mail_messages.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(10))  # sent | mailbox | error
    error: Mapped[str | None] = mapped_column(String(500))
