"""When credited points become spendable and when they expire, from the programme's settings."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from patron.program.models import Program


def expires_at(program: Program, earned_at: datetime) -> datetime | None:
    """`after_days`: that many days after the purchase. `end_of_year`: the first instant of the next
    year in the programme's time zone, i.e. the end of 31 December where the programme is."""
    if program.expiry_policy == "after_days" and program.expiry_days:
        return earned_at + timedelta(days=program.expiry_days)
    if program.expiry_policy == "end_of_year":
        tz = ZoneInfo(program.timezone)
        local_year = earned_at.astimezone(tz).year
        return datetime(local_year + 1, 1, 1, tzinfo=tz)
    return None


def available_at(program: Program, earned_at: datetime) -> datetime:
    return earned_at + timedelta(days=program.pending_days)
