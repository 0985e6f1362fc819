"""The tier ladder: shown to every reader, edited as a whole by the roles that configure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.errors import PatronError
from patron.tiers import service as tiers
from patron.tiers.schemas import LadderIn
from patron.web import i18n, security
from patron.web.admin.common import build, db, text
from patron.web.errors import describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("tiers", N_("Tiers"), "/admin/tiers", Perm.READ_ALL, order=50))

METRICS = {"points": N_("Points earned"), "spend": N_("Net spend"), "visits": N_("Visits")}
EXTRA_ROWS = 2


def _rows(form: FormData) -> list[dict[str, Any]]:
    """The ladder's rows as typed; a row without a code is an unused blank."""
    rows = []
    for i in range(int(text(form, "rows") or 0)):
        row = {k: text(form, f"tier-{i}-{k}") for k in ("code", "name", "threshold", "multiplier", "benefits")}
        if row["code"] or row["name"]:
            rows.append(row)
    return rows


def _page(
    request: Request, staff: Staff, ladder: dict[str, Any], error: Any = None, status_code: int = 200
) -> Response:
    return render(
        request,
        "admin/tiers.html",
        {
            "active": "tiers",
            "ladder": ladder,
            "rows": [*ladder["tiers"], *({} for _ in range(EXTRA_ROWS))],
            "metrics": METRICS,
            "error": error,
            "can_edit": staff.can(Perm.CONFIGURE),
        },
        status_code=status_code,
    )


@router.get("/tiers")
def tier_ladder(request: Request, staff: Staff = staff_required(Perm.READ_ALL)) -> Response:
    ladder = db(request).read(tiers.ladder_out).model_dump(mode="json")
    for t in ladder["tiers"]:
        t["benefits"] = "\n".join(t["benefits"])
    return _page(request, staff, ladder)


@router.post("/tiers")
def save_ladder(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = staff_required(Perm.CONFIGURE)
) -> Response:
    rows = _rows(form)
    body: dict[str, Any] = {
        "metric": text(form, "metric"),
        "window_days": text(form, "window_days") or None,
        "tiers": [
            {
                "code": r["code"],
                "name": r["name"],
                "threshold": r["threshold"] or None,
                "multiplier": r["multiplier"] or "1",
                "benefits": [line.strip() for line in r["benefits"].splitlines() if line.strip()],
            }
            for r in rows
        ],
    }
    if "grace_days" in LadderIn.model_fields and text(form, "grace_days"):
        body["grace_days"] = text(form, "grace_days")
    try:
        db(request).write(lambda s: tiers.put_ladder(s, staff.actor, build(LadderIn, body)))
    except PatronError as exc:
        ladder = {**body, "grace_days": text(form, "grace_days") or None, "tiers": rows}
        return _page(request, staff, ladder, describe(exc, i18n.gettext(request)), exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The tier ladder is saved."))
    return redirect("/admin/tiers")
