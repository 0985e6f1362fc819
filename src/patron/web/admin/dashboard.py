"""The dashboard: the figures an owner looks at first, for a date range, with charts."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.access.roles import Perm
from patron.analytics import service as analytics
from patron.kit import clock
from patron.program import service as program_service
from patron.web import charts, i18n
from patron.web.admin.common import db
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("dashboard", N_("Dashboard"), "/admin", Perm.READ_ALL, order=10))

DEFAULT_DAYS = 30


def _parse(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("")
def dashboard(
    request: Request, start: str | None = None, end: str | None = None, staff: Staff = staff_required()
) -> Response:
    if not staff.can(Perm.READ_ALL):
        return redirect("/admin/members", status_code=302)
    _ = i18n.gettext(request)
    lang = i18n.request_language(request)

    def run(s: Session) -> analytics.Dashboard:
        today = clock.now().astimezone(program_service.zone(program_service.get(s))).date()
        last = _parse(end) or today
        first = _parse(start) or last - timedelta(days=DEFAULT_DAYS - 1)
        return analytics.dashboard(s, first, last)

    figures = db(request).read(run)
    labels = [i18n.day(b.start, lang, "short") for b in figures.buckets]
    points_chart = charts.series(
        _("Points per period"),
        labels,
        [
            (_("Issued"), [b.issued for b in figures.buckets]),
            (_("Redeemed"), [b.redeemed for b in figures.buckets]),
            (_("Expired"), [b.expired for b in figures.buckets]),
        ],
    )
    members_chart = charts.series(
        _("New members"), labels, [(_("New members"), [b.new_members for b in figures.buckets])], bars=True
    )
    tiers_chart = charts.shares(_("Members per tier"), [(name, n) for _code, name, n in figures.tiers])
    segments_chart = charts.shares(_("Segment sizes"), [(name, size or 0) for _code, name, size in figures.segments])
    return render(
        request,
        "admin/dashboard.html",
        {
            "active": "dashboard",
            "d": figures,
            "points_chart": points_chart,
            "members_chart": members_chart,
            "tiers_chart": tiers_chart,
            "segments_chart": segments_chart,
        },
    )
