"""Per-process caches of configuration that is read on every purchase and changed rarely.

Entries are keyed by the database and stamped with the programme's `config_version`, which every
change to rules or tiers bumps in the same transaction. A reader compares the version it sees in
its own transaction, so it never uses rules older than what its snapshot shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")

_entries: dict[tuple[str, str], tuple[int, Any]] = {}
_lock = threading.Lock()


def versioned(session: Session, name: str, version: int, load: Callable[[], T]) -> T:
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), name)
    hit = _entries.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]  # type: ignore[no-any-return]
    value = load()
    with _lock:
        _entries[key] = (version, value)
    return value
