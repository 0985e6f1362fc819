"""refresh-segments: every segment's membership recomputed as of `as_of`, set-wise.

One transaction per segment (segments/service.py `refresh`): its membership changes all at once,
and a long refresh of one segment never holds the others. Running it again with the same `as_of`
finds nothing to add or remove, and records the same sizes once more.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from patron.db import Database
from patron.segments import service


def refresh_segments(db: Database, as_of: datetime, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    totals = {"segments": 0, "memberships": 0, "joined": 0, "left": 0}
    for code in db.read(service.codes):
        done = db.write(lambda s, code=code: service.refresh(s, code, as_of))  # type: ignore[misc]
        if done is None:  # deleted since the list was read
            continue
        totals["segments"] += 1
        totals["memberships"] += done.size
        totals["joined"] += done.joined
        totals["left"] += done.left
        if progress:
            progress(1)
    return totals
