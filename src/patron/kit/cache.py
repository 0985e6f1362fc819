"""Per-process caches of configuration that is read on every purchase and changed rarely.

Entries are kept per engine and stamped with the programme's `config_version`, which every
change to rules or tiers bumps in the same transaction. A reader compares the version it sees in
its own transaction, so it never uses rules older than what its snapshot shows.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

T = TypeVar("T")

# Keyed by the engine object itself (a test process makes many, one per database), and dropped
# with it; hashing the engine's URL on every read cost more than the lookup.
_entries: weakref.WeakKeyDictionary[Engine, dict[str, tuple[int, Any]]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def versioned(session: Session, name: str, version: int, load: Callable[[], T]) -> T:
    engine = session.get_bind().engine
    hit = _entries.get(engine, {}).get(name)
    if hit is not None and hit[0] == version:
        return hit[1]  # type: ignore[no-any-return]
    value = load()
    with _lock:
        _entries.setdefault(engine, {})[name] = (version, value)
    return value
