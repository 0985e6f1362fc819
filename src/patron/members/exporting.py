"""CSV export of members, streamed in batches; `patron import members` reads it back unchanged.

The columns are the import's (see `importing.COLUMNS`) plus one `attribute.NAME` column per custom
attribute any member has. Erased members are left out: they no longer have personal data. The card
is the member's active loyalty card (the newest, when there are several); points_available is
informative and is not imported.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from patron.cards.models import Card
from patron.ledger.models import PointAccount
from patron.members.importing import ATTRIBUTE_PREFIX, BATCH_SIZE, COLUMNS
from patron.members.models import Member

_FIELDS = (
    Member.id,
    Member.number,
    Member.first_name,
    Member.last_name,
    Member.email,
    Member.phone,
    Member.birth_date,
    Member.language,
    Member.marketing_email,
    Member.marketing_sms,
    Member.marketing_push,
    Member.status,
    Member.tier_code,
    Member.enrolled_at,
    Member.attributes,
)


def _exported() -> Any:
    return Member.status != "erased"


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Member).where(_exported())) or 0)


def attribute_names(session: Session) -> list[str]:
    """Every custom attribute name in use, sorted: the attribute.NAME columns of the export."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = select(func.json_object_keys(Member.attributes)).where(_exported()).distinct()
    elif dialect == "sqlite":
        keys = func.json_each(Member.attributes).table_valued("key", joins_implicitly=True)
        stmt = select(keys.c.key).select_from(Member).join(keys, true()).where(_exported()).distinct()
    else:  # no JSON key function known: read the column once
        names: set[str] = set()
        for attrs in session.scalars(select(Member.attributes).where(_exported()).execution_options(yield_per=5000)):
            names.update(attrs or {})
        return sorted(names)
    return sorted(str(name) for name in session.scalars(stmt))


def columns(attributes: Sequence[str]) -> list[str]:
    return [*COLUMNS, *(ATTRIBUTE_PREFIX + name for name in attributes)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _cards(session: Session, member_ids: list[uuid.UUID]) -> dict[uuid.UUID | None, str | None]:
    stmt = (
        select(Card.member_id, Card.number)
        .where(Card.member_id.in_(member_ids), Card.kind == "loyalty", Card.status == "active")
        .order_by(Card.created_at, Card.id)
    )
    return {member_id: number for member_id, number in session.execute(stmt)}  # the newest wins


def write_members(
    session: Session,
    out: TextIO,
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write every member to `out` as CSV, oldest first; returns how many were written."""
    attributes = attribute_names(session)
    writer = csv.writer(out)
    writer.writerow(columns(attributes))
    stmt = (
        select(*_FIELDS, func.coalesce(PointAccount.available, 0).label("points_available"))
        .outerjoin(PointAccount, PointAccount.member_id == Member.id)
        .where(_exported())
        .order_by(Member.id)
        .execution_options(yield_per=batch_size)
    )
    written = 0
    for rows in session.execute(stmt).partitions():
        cards = _cards(session, [r.id for r in rows])
        for r in rows:
            attrs = r.attributes or {}
            values = {
                "number": r.number,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "email": r.email,
                "phone": r.phone,
                "birth_date": r.birth_date,
                "language": r.language,
                "card": cards.get(r.id),
                "marketing_email": r.marketing_email,
                "marketing_sms": r.marketing_sms,
                "marketing_push": r.marketing_push,
                "status": r.status,
                "tier": r.tier_code,
                "enrolled_at": r.enrolled_at,
                "points_available": r.points_available,
            }
            writer.writerow([_text(values[c]) for c in COLUMNS] + [_text(attrs.get(a)) for a in attributes])
        written += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    return written
