"""Cursor pagination over UUIDv7 keys: `{"items": [...], "next_cursor": str|null}`."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from patron.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(key: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(key.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this API gave out", field="cursor") from exc


def page(
    session: Session,
    stmt: Select[Any],
    key: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
) -> tuple[Sequence[Any], str | None]:
    """Run `stmt` one page at a time, ordered by `key`; returns the rows and the next cursor."""
    if cursor:
        after = decode_cursor(cursor)
        stmt = stmt.where(key < after if newest_first else key > after)
    stmt = stmt.order_by(key.desc() if newest_first else key.asc()).limit(limit + 1)
    rows = session.scalars(stmt).all()
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(getattr(rows[-1], key.key))
    return rows, None
