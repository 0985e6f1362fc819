"""The scheduled jobs by name, as `patron jobs run NAME`, POST /v1/jobs/{name}/run and the worker
know them, and the record of their runs (`job_runs`).

Every run is a job_runs row. The worker's rows are keyed by the schedule slot they run, and the
insert of that row is the claim: replicas race to insert the same (job, slot) and only the one
whose insert lands runs the job (`claim`). A run by hand gets a slot of its own ("manual:...").
The row says `running` while the job works, then `done` with the job's counts or `failed` with
the kind of error; the traceback goes to the log only.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.analytics import rollups
from patron.db import Database
from patron.errors import PatronError
from patron.jobs import birthdays, points, requalify, segments
from patron.jobs.models import JobRun
from patron.kit import clock
from patron.mail.service import deliver_pending

log = logging.getLogger("patron.jobs")

Job = Callable[..., dict[str, Any]]

# In the order the worker runs jobs that fall due together: points are released and expired
# before birthdays are paid, tiers requalify before segments (which may look at the tier).
JOBS: dict[str, Job] = {
    "release-pending": points.release_pending,
    "expire-points": points.expire_points,
    "birthday-bonuses": birthdays.birthday_bonuses,
    "requalify-tiers": requalify.requalify_tiers,
    "refresh-segments": segments.refresh_segments,
    # The dashboard's daily totals for the days just closed, so nobody waits for them to be summed.
    "warm-dashboard": rollups.warm,
    # Retries of messages whose first delivery, right after their transaction, did not get through.
    "deliver-mail": deliver_pending,
}

MANUAL = "manual:"


def run(db: Database, name: str, as_of: datetime, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    return JOBS[name](db, as_of, progress)


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def claim(db: Database, name: str, slot: str, as_of: datetime, worker: str) -> bool:
    """Insert the (job, slot) row in a transaction of its own; False when another process has it."""
    values = {
        "job": name,
        "slot": slot,
        "as_of": as_of,
        "status": "running",
        "worker": worker,
        "started_at": clock.now(),
    }

    def insert(session: Session) -> bool:
        dialect = postgresql if db.dialect == "postgresql" else sqlite
        stmt = dialect.insert(JobRun).values(**values).on_conflict_do_nothing(index_elements=["job", "slot"])
        # RETURNING tells for sure whether this insert landed; rowcount came back -1 on PostgreSQL.
        return session.execute(stmt.returning(JobRun.job)).first() is not None

    return db.write(insert)


def _finish(db: Database, name: str, slot: str, result: dict[str, Any] | None, error: str | None) -> None:
    def mark(session: Session) -> None:
        session.execute(
            update(JobRun)
            .where(JobRun.job == name, JobRun.slot == slot)
            .values(
                status="failed" if error is not None else "done",
                finished_at=clock.now(),
                result=result,
                error=error,
            )
        )

    try:
        db.write(mark)
    except Exception:  # the database went away; the row stays `running`, the log says why
        log.exception("could not record the end of %s (slot %s)", name, slot)


def describe(exc: BaseException) -> str:
    """What job_runs and GET /v1/jobs show of a failure: the stable code of a refusal, or only the
    kind of error, since a database message may quote the data it choked on."""
    if isinstance(exc, PatronError):
        return f"{exc.code}: {exc.detail}"[:500]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__} (see the worker's log)"


def execute(
    db: Database,
    name: str,
    slot: str,
    as_of: datetime,
    *,
    worker: str,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any] | None:
    """Claim (name, slot), run the job and record how it went. None when the slot was someone
    else's. A failure is recorded and raised again, for the caller to log."""
    if not claim(db, name, slot, as_of, worker):
        return None
    try:
        result = run(db, name, as_of, progress)
    except BaseException as exc:
        _finish(db, name, slot, None, describe(exc))
        raise
    _finish(db, name, slot, result, None)
    return result


def run_by_hand(
    db: Database, name: str, as_of: datetime, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """A run asked for through the CLI or the API, recorded under a slot of its own."""
    result = execute(db, name, f"{MANUAL}{uuid.uuid4().hex}", as_of, worker=this_process(), progress=progress)
    assert result is not None  # a fresh slot cannot be taken
    return result


def last_runs(session: Session) -> dict[str, JobRun]:
    """Each job's most recent run (scheduled or by hand), by start time."""
    latest = select(JobRun.job, func.max(JobRun.started_at).label("started_at")).group_by(JobRun.job).subquery("latest")
    rows = session.scalars(
        select(JobRun)
        .join(latest, (latest.c.job == JobRun.job) & (latest.c.started_at == JobRun.started_at))
        .order_by(JobRun.job, JobRun.slot.desc())
    )
    out: dict[str, JobRun] = {}
    for row in rows:
        out.setdefault(row.job, row)
    return out
