from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.audit import service as audit
from patron.auth import get_db, require
from patron.db import Database
from patron.errors import NotFound
from patron.jobs import registry
from patron.kit import clock
from patron.kit.api import problems
from patron.kit.types import AwareDatetime

router = APIRouter(tags=["operations"])


class JobRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = None


class JobRunOut(BaseModel):
    job: str
    as_of: datetime
    result: dict[str, Any]


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
    result = registry.run(db, name, as_of)
    db.write(lambda s: audit.record(s, actor, "job.run", "job", name, {"as_of": as_of.isoformat(), **result}))
    return JobRunOut(job=name, as_of=as_of, result=result)
