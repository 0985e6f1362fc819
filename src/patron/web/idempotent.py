"""Web forms that move points or use coupons, made safe to submit twice.

Each such form carries an `external_id` generated when the page was shown; the view runs the
service through the same idempotency record as the API (same scope, same payload), so a double
click, a reload or a retry after a lost answer does the work once and shows the first result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from patron.errors import PatronError, ValidationFailed
from patron.idempotency import service as idempotency

MAX_EXTERNAL_ID = 200


def external_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_EXTERNAL_ID:
        raise ValidationFailed("The form expired. Reload the page and send it again.", field="external_id")
    return value.strip()


def once(
    session: Session, scope: str, key: str, payload: dict[str, Any], work: Callable[[], BaseModel]
) -> tuple[dict[str, Any], bool]:
    """(the answer, whether it is a replay of an earlier submission)."""
    answer, replayed = idempotency.once(session, scope, key, payload, work)
    return answer.body, replayed


def as_refusal(exc: Exception) -> PatronError:
    """A form that did not parse (pydantic) as the same 422 the API gives, for `errors.describe`."""
    if isinstance(exc, PatronError):
        return exc
    if isinstance(exc, ValidationError):
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": str(e["msg"]).removeprefix("Value error, ")}
            for e in exc.errors()
        ]
        return ValidationFailed("; ".join(f["message"] for f in fields) or "invalid", errors=fields)
    return ValidationFailed(str(exc))
