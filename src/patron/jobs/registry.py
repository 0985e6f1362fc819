"""The scheduled jobs by name, as `patron jobs run NAME` and POST /v1/jobs/{name}/run know them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from patron.db import Database
from patron.jobs import points, segments

Job = Callable[..., dict[str, Any]]

JOBS: dict[str, Job] = {
    "release-pending": points.release_pending,
    "expire-points": points.expire_points,
    "refresh-segments": segments.refresh_segments,
}


def run(db: Database, name: str, as_of: datetime, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    return JOBS[name](db, as_of, progress)
