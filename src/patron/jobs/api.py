from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.audit import service as audit
from patron.auth import get_db, require
from patron.db import Database
from patron.errors import NotFound
from patron.jobs import registry, worker
from patron.jobs.models import JobRun
from patron.kit import clock
from patron.kit.api import problems
from patron.kit.types import AwareDatetime
from patron.program import service as program_service

router = APIRouter(tags=["operations"])


class JobRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = None


class JobRunOut(BaseModel):
    job: str
    as_of: datetime
    result: dict[str, Any]


class RunOut(BaseModel):
    slot: str = Field(description='The schedule slot (RFC 3339, UTC) or "manual:..." for a run by hand')
    manual: bool
    as_of: datetime
    status: str = Field(description="running | done | failed")
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class JobOut(BaseModel):
    name: str
    schedule: str = Field(description="When the worker runs it, in the programme's time zone (PATRON_SCHEDULE)")
    next_run_at: datetime | None
    last_run: RunOut | None


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = None  # the jobs fit on one page; kept for the shape every list has


def _run_out(run: JobRun) -> RunOut:
    return RunOut(
        slot=run.slot,
        manual=run.slot.startswith(registry.MANUAL),
        as_of=run.as_of,
        status=run.status,
        worker=run.worker,
        started_at=run.started_at,
        finished_at=run.finished_at,
        result=run.result,
        error=run.error,
    )


@router.get("/jobs", response_model=JobList, responses=problems())
def list_jobs(request: Request, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.READ_ALL))) -> JobList:
    """The scheduled jobs: each one's schedule, when it is next due and how its last run went."""
    table = worker.schedules(request.app.state.settings.schedule)

    def read(session: Session) -> JobList:
        tz = program_service.zone(program_service.get(session))
        last = registry.last_runs(session)
        now = clock.now()
        return JobList(
            items=[
                JobOut(
                    name=name,
                    schedule=schedule.text,
                    next_run_at=schedule.next(now, tz),
                    last_run=_run_out(last[name]) if name in last else None,
                )
                for name, schedule in table.items()
            ]
        )

    return db.read(read)


@router.post("/jobs/{name}/run", response_model=JobRunOut, responses=problems(404, 422))
def run_job(
    name: str,
    body: JobRunIn | None = None,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.ADMINISTER)),
) -> JobRunOut:
    if name not in registry.JOBS:
        raise NotFound(f"No job named {name!r}; jobs: {', '.join(sorted(registry.JOBS))}")
    as_of = (body.as_of if body else None) or clock.now()
    result = registry.run_by_hand(db, name, as_of)
    db.write(lambda s: audit.record(s, actor, "job.run", "job", name, {"as_of": as_of.isoformat(), **result}))
    return JobRunOut(job=name, as_of=as_of, result=result)
