"""The dashboard's rollups, and the indexes its reads need on other domains' tables.

Each rollup holds the figures of closed days (in the programme's time zone) that never change once
a day is over, one row per zone and day (or day and previous day), zero rows included, so that a
missing row means "not computed yet". Rows are keyed by the zone the days were cut in: after a
change of the programme's time zone the old rows are simply not asked for. They are derived data:
deleting any of them is always safe, the dashboard fills them again when it needs them.
`computed_at` is the wall-clock time of the computation, compared with the time in the ids of rows
inserted since (see `rollups.check`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.ledger.models import LedgerEntry
from patron.members.models import Member


class LedgerDay(Base):
    """The point figures of one day's ledger entries (by `created_at`)."""

    __tablename__ = "analytics_ledger_days"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    issued: Mapped[int] = mapped_column(BigInteger)  # earn + bonus + positive adjust
    redeemed: Mapped[int] = mapped_column(BigInteger)  # redeem less restore
    expired: Mapped[int] = mapped_column(BigInteger)
    reversed: Mapped[int] = mapped_column(BigInteger)
    adjusted_down: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EnrolmentDay(Base):
    """How many of the members there are were enrolled on a day, erased ones included (an erasure
    changes a member, not the day: the dashboard subtracts the erased ones live)."""

    __tablename__ = "analytics_enrolment_days"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    enrolled: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PurchaseDay(Base):
    """Members who bought on `day`, counted by the day of their previous purchase.

    Distinct purchasers do not add up across days, but this does: the members active in
    [start, end] are those who bought on a day of the period and had not bought since before
    `start`, i.e. the sum of `members` over `start <= day <= end` and `previous < start`.
    `previous` is NEVER_BOUGHT for a member's first purchase."""

    __tablename__ = "analytics_purchase_days"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    previous: Mapped[date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RollupCheck(Base):
    """How far a source table has been checked for rows that arrived late, i.e. for a day
    already closed (a purchase posted by a till that was offline, members imported with their
    enrolment dates). Ids are UUIDv7, so `id >= checked` is what was inserted since."""

    __tablename__ = "analytics_rollup_checks"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    checked: Mapped[uuid.UUID] = mapped_column(Uuid)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Declared here rather than beside their tables because the dashboard is their only reader: the
# open days' ledger entries by time; the erased members by enrolment day (a tiny partial index:
# erasure is rare). Members per tier are counted by a scan of the table, deliberately without an
# index on `tier_code`: with one, every tier change (a requalification moves hundreds of thousands
# of members) rewrites all ten of the table's indexes instead of being a heap-only update.
Index("ix_ledger_entries_created_at", LedgerEntry.created_at)
Index(
    "ix_members_erased_enrolled_at",
    Member.enrolled_at,
    postgresql_where=Member.status == "erased",
    sqlite_where=Member.status == "erased",
)
