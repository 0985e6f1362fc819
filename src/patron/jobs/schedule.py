"""When the worker runs each job: a small timetable language, read in the programme's time zone.

    daily HH:MM      every day at that local time ("daily" alone is midnight)
    hourly :MM       every hour at that minute ("hourly" alone is on the hour)
    every N minutes  every N minutes (also "every N hours", "every 15m", "every 2h"), counted
                     from 1970-01-01 UTC so every replica agrees on the instants
    off              never (the job still runs by hand)

A schedule turns "now" into slots: `latest(now)` is the last instant the job was due, and the
worker runs that slot once; a slot nobody ran because the worker was down is simply superseded by
the next, so after downtime a job runs once, not once per missed slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULTS: dict[str, str] = {
    "release-pending": "hourly :05",
    "expire-points": "daily 00:10",
    "birthday-bonuses": "daily 00:15",
    "requalify-tiers": "daily 00:30",
    "refresh-segments": "daily 01:00",
    "warm-dashboard": "daily 01:30",
    "deliver-mail": "every 1 minute",
}

_DAILY = re.compile(r"^daily(?:\s+(\d{1,2}):(\d{2}))?$")
_HOURLY = re.compile(r"^hourly(?:\s+:(\d{2}))?$")
_EVERY = re.compile(r"^every\s+(\d{1,4})\s*(m|min|mins|minute|minutes|h|hour|hours)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    text: str
    kind: str  # daily | hourly | every | off
    at: time = time(0, 0)  # daily: the local time; hourly: the minute
    period: timedelta = timedelta(0)  # every

    def latest(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The last instant at or before `now` when the job was due (UTC), or None when off."""
        if self.kind == "off":
            return None
        if self.kind == "every":
            steps = (now - _EPOCH) // self.period
            return _EPOCH + steps * self.period
        local = now.astimezone(tz)
        if self.kind == "hourly":
            slot = local.replace(minute=self.at.minute, second=0, microsecond=0).astimezone(UTC)
            return slot if slot <= now else slot - timedelta(hours=1)
        day = local.date()
        slot = datetime.combine(day, self.at, tzinfo=tz).astimezone(UTC)
        if slot > now:
            slot = datetime.combine(day - timedelta(days=1), self.at, tzinfo=tz).astimezone(UTC)
        return slot

    def next(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The first instant after `now` when the job is due (UTC), or None when off."""
        latest = self.latest(now, tz)
        if latest is None:
            return None
        if self.kind == "every":
            return latest + self.period
        if self.kind == "hourly":
            return latest + timedelta(hours=1)
        day = latest.astimezone(tz).date() + timedelta(days=1)
        return datetime.combine(day, self.at, tzinfo=tz).astimezone(UTC)


def parse(text: str) -> Schedule:
    """A schedule from its text; ValueError says what is accepted."""
    raw = " ".join(text.strip().lower().split())
    if raw == "off":
        return Schedule(raw, "off")
    if m := _DAILY.match(raw):
        hour, minute = int(m.group(1) or 0), int(m.group(2) or 0)
        if hour > 23 or minute > 59:
            raise ValueError(f"{text!r}: daily takes a time from 00:00 to 23:59")
        return Schedule(f"daily {hour:02d}:{minute:02d}", "daily", at=time(hour, minute))
    if m := _HOURLY.match(raw):
        minute = int(m.group(1) or 0)
        if minute > 59:
            raise ValueError(f"{text!r}: hourly takes a minute from :00 to :59")
        return Schedule(f"hourly :{minute:02d}", "hourly", at=time(0, minute))
    if m := _EVERY.match(raw):
        n, unit = int(m.group(1)), m.group(2)
        minutes = n * 60 if unit.startswith("h") else n
        if not 1 <= minutes <= 7 * 24 * 60:
            raise ValueError(f"{text!r}: every takes from 1 minute to 7 days")
        text = "every minute" if minutes == 1 else f"every {minutes} minutes"
        return Schedule(text, "every", period=timedelta(minutes=minutes))
    raise ValueError(f"{text!r} is not a schedule: use 'daily HH:MM', 'hourly :MM', 'every N minutes' or 'off'")


def timetable(overrides: dict[str, str], jobs: list[str]) -> dict[str, Schedule]:
    """Every job's schedule: the defaults, with `overrides` (PATRON_SCHEDULE) on top."""
    unknown = sorted(set(overrides) - set(jobs))
    if unknown:
        raise ValueError(f"no job named {', '.join(unknown)}; jobs: {', '.join(jobs)}")
    return {name: parse(overrides.get(name, DEFAULTS.get(name, "off"))) for name in jobs}


def slot_key(slot: datetime) -> str:
    """The slot as job_runs stores it: RFC 3339 in UTC, to the second."""
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
