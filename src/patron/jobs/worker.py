"""`patron worker`: runs the scheduled jobs on their timetable, as one or many replicas.

Each pass looks at every job's schedule in the programme's time zone (jobs/schedule.py), takes
the latest slot that has come, and tries to claim it by inserting its job_runs row
(registry.claim). The replica whose insert lands runs the job with `as_of` = the pass's time;
the others see the row and move on, so a slot is worked once however many replicas run. After
downtime only the latest slot is due, so a job runs once, not once per slot missed.

A stop request (SIGTERM, SIGINT) is honoured between jobs: the job at work finishes and is
recorded first. A replica killed mid-job leaves its row `running`; the job's own transactions
roll back, and the next slot does the work, since every job picks up whatever is left.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError

from patron.db import Database
from patron.jobs import registry
from patron.jobs.schedule import Schedule, slot_key, timetable
from patron.kit import clock
from patron.program import service as program_service

log = logging.getLogger("patron.worker")


@dataclass(frozen=True)
class Ran:
    job: str
    slot: str
    result: dict[str, Any] | None  # None when it failed
    error: str | None = None


def schedules(overrides: dict[str, str]) -> dict[str, Schedule]:
    return timetable(overrides, list(registry.JOBS))


def _zone(db: Database) -> ZoneInfo:
    return db.read(lambda s: program_service.zone(program_service.get(s)))


def run_due(
    db: Database,
    table: dict[str, Schedule],
    *,
    worker: str,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> list[Ran]:
    """One pass: claim and run every job whose latest slot nobody has run yet. Returns what this
    replica ran (not what others did); a failed job is recorded and the pass goes on."""
    now = now or clock.now()
    tz = _zone(db)
    ran: list[Ran] = []
    for name, schedule in table.items():
        if stop is not None and stop.is_set():
            break
        slot = schedule.latest(now, tz)
        if slot is None:
            continue
        key = slot_key(slot)
        try:
            result = registry.execute(db, name, key, now, worker=worker)
        except Exception as exc:  # recorded by execute (unless the claim itself failed); the others still run
            log.exception("%s (slot %s) failed", name, key)
            ran.append(Ran(name, key, None, registry.describe(exc)))
            continue
        if result is not None:
            log.info("%s (slot %s): %s", name, key, ", ".join(f"{k} {v}" for k, v in result.items()))
            ran.append(Ran(name, key, result))
    return ran


def next_wake(table: dict[str, Schedule], now: datetime, tz: ZoneInfo) -> datetime | None:
    """The first instant after `now` at which some job falls due."""
    upcoming = [t for s in table.values() if (t := s.next(now, tz)) is not None]
    return min(upcoming) if upcoming else None


def serve(
    db: Database,
    table: dict[str, Schedule],
    *,
    stop: threading.Event,
    worker: str | None = None,
    poll_seconds: float = 60,
) -> None:
    """Run passes until `stop` is set, sleeping until the next slot (at most `poll_seconds`, so a
    change of the programme's time zone or a database that was down is noticed)."""
    worker = worker or registry.this_process()
    log.info("worker %s started: %s", worker, "; ".join(f"{n} {s.text}" for n, s in table.items()))
    while not stop.is_set():
        try:
            run_due(db, table, worker=worker, stop=stop)
            now = clock.now()
            wake = next_wake(table, now, _zone(db))
        except DBAPIError:
            log.warning("the database is unavailable; trying again in %ss", poll_seconds, exc_info=True)
            wake = None
            now = clock.now()
        pause = poll_seconds if wake is None else min(poll_seconds, (wake - now).total_seconds())
        stop.wait(max(pause, 0.0) + 0.01)  # just past the slot, so it is `latest` when we wake
    log.info("worker %s stopped", worker)
