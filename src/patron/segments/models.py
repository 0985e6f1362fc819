from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.ids import new_id


class Segment(Base):
    """A rule-based group of members: conditions joined by `all` (AND) or `any` (OR)."""

    __tablename__ = "segments"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    match: Mapped[str] = mapped_column(String(3))  # all | any
    # [{"field", "op", "value", "window_days"?}], money values in minor units of the programme's
    # currency (as earning rules keep min_total); API.md "Segments" names the fields and ops.
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Shipped with the programme (vip, regular, new): editable, never deleted.
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the last refresh computed, and the instant (its as_of) it reflects.
    size: Mapped[int | None] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SegmentMember(Base):
    """Membership as the last refresh computed it.

    No foreign keys: the rows are derived data, written only by the refresh and removed with their
    segment, and a first refresh inserts a row per member; a per-row constraint check on each
    would double its cost at a million members.
    """

    __tablename__ = "segment_members"

    segment_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())  # the as_of of the refresh that added them

    # The primary key serves a segment's member list; this serves "which segments is she in".
    __table_args__ = (Index("ix_segment_members_member_id", "member_id"),)


class SegmentSize(Base):
    """A segment's size at each refresh: the series behind "sizes over time"."""

    __tablename__ = "segment_sizes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    segment_code: Mapped[str] = mapped_column(String(40), ForeignKey("segments.code"))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the refresh's as_of
    size: Mapped[int] = mapped_column(BigInteger)
    joined: Mapped[int] = mapped_column(BigInteger)  # members added by this refresh
    left: Mapped[int] = mapped_column(BigInteger)  # members removed by this refresh

    __table_args__ = (Index("ix_segment_sizes_segment_code_id", "segment_code", "id"),)
