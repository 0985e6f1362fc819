"""The audit log: who did what to which record, newest first, with filters."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.access.roles import Perm
from patron.audit import service as audit
from patron.program import service as program_service
from patron.web.admin.common import db
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("audit", N_("Audit log"), "/admin/audit", Perm.READ_ALL, order=80))

PAGE = 50


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/audit")
def audit_log(
    request: Request,
    action: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_id: str | None = None,
    start: str | None = None,
    end: str | None = None,
    cursor: str | None = None,
    staff: Staff = staff_required(Perm.READ_ALL),
) -> Response:
    first, last = _day(start), _day(end)

    def run(s: Session) -> tuple[list[Any], str | None]:
        tz = program_service.zone(program_service.get(s))
        since = datetime.combine(first, time.min, tzinfo=tz) if first else None
        until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz) if last else None
        rows, next_cursor = audit.search(
            s,
            entity_type=entity_type or None,
            entity_id=entity_id or None,
            actor_id=actor_id or None,
            action=action or None,
            since=since,
            until=until,
            limit=PAGE,
            cursor=cursor,
        )
        return list(rows), next_cursor

    rows, next_cursor = db(request).read(run)
    filters = {
        "action": action or "",
        "entity_type": entity_type or "",
        "entity_id": entity_id or "",
        "actor_id": actor_id or "",
        "start": start or "",
        "end": end or "",
    }
    next_url = None
    if next_cursor:
        next_url = "/admin/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    return render(
        request, "admin/audit.html", {"active": "audit", "rows": rows, "filters": filters, "next_url": next_url}
    )
