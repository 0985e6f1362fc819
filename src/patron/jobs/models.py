from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime


class JobRun(Base):
    """One run of a scheduled job for one slot of its schedule (or one `as_of` asked for by hand).

    The primary key is the claim: replicas of the worker race to insert the same (job, slot) row
    and only the one whose insert lands runs the job, so a slot is never worked twice.
    """

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The scheduled instant, RFC 3339 UTC; "manual:<hex>" for a run asked for by hand.
    slot: Mapped[str] = mapped_column(String(40), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(10))  # running | done | failed
    worker: Mapped[str | None] = mapped_column(String(100))  # host:pid of the replica that ran it
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_runs_job_started_at", "job", "started_at"),)


class BirthdayAward(Base):
    """The birthday bonus a member got for one calendar year: the key makes it once per year."""

    __tablename__ = "birthday_awards"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime())
