"""Segments: the list with sizes, a form to create and edit one, its size over time and members."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.errors import PatronError
from patron.members import service as members
from patron.segments import service as segments
from patron.segments.schemas import Op, SegmentIn, SegmentOut, SegmentPatch
from patron.web import charts, i18n, security
from patron.web.admin.common import build, db, text
from patron.web.errors import describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("segments", N_("Segments"), "/admin/segments", Perm.READ_ALL, order=60))

OPS: tuple[str, ...] = get_args(Op)
OP_LABELS = {"gte": "≥", "gt": ">", "lte": "≤", "lt": "<", "eq": "=", "in": N_("one of")}
FIELD_LABELS = {
    "spend": N_("Net spend"),
    "visits": N_("Visits"),
    "points_earned": N_("Points earned"),
    "days_since_last_visit": N_("Days since the last visit"),
    "days_since_enrolled": N_("Days since enrolment"),
    "tier": N_("Tier"),
    "category": N_("Bought in category"),
    "birthday_month": N_("Birthday month"),
    "channel": N_("Enrolment channel"),
}
INTEGER_FIELDS = {"visits", "points_earned", "days_since_last_visit", "days_since_enrolled", "birthday_month"}
EXTRA_ROWS = 2


def _value(field: str, op: str, raw: str) -> Any:
    """The condition's value as the API takes it: a list for `in`, integers for counts and days."""

    def one(token: str) -> Any:
        token = token.strip()
        if field in INTEGER_FIELDS and token.lstrip("-").isdigit():
            return int(token)
        return token

    if op == "in":
        return [one(t) for t in raw.split(",") if t.strip()]
    return one(raw)


def _conditions(form: FormData) -> list[dict[str, Any]]:
    out = []
    for i in range(int(text(form, "rows") or 0)):
        field = text(form, f"c-{i}-field")
        if field == "attribute":
            field = f"attribute.{text(form, f'c-{i}-attribute')}"
        value = text(form, f"c-{i}-value")
        if not field or not value:  # a blank row
            continue
        op = text(form, f"c-{i}-op")
        condition: dict[str, Any] = {"field": field, "op": op, "value": _value(field, op, value)}
        window = text(form, f"c-{i}-window_days")
        if window:
            condition["window_days"] = window
        out.append(condition)
    return out


def _rows_of(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in conditions:
        value = c.get("value")
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))
        field = str(c.get("field", ""))
        attribute = field.removeprefix("attribute.") if field.startswith("attribute.") else ""
        rows.append(
            {
                "field": "attribute" if attribute else field,
                "attribute": attribute,
                "op": c.get("op", "gte"),
                "value": shown,
                "window_days": c.get("window_days") or "",
            }
        )
    return [*rows, *({"op": "gte"} for _ in range(EXTRA_ROWS))]


@router.get("/segments")
def segment_list(request: Request, staff: Staff = staff_required(Perm.READ_ALL)) -> Response:
    def run(s: Session) -> list[SegmentOut]:
        rows, _ = segments.listing(s, limit=500, cursor=None)
        return [segments.to_out(s, r) for r in rows]

    items = db(request).read(run)
    return render(
        request,
        "admin/segments.html",
        {"active": "segments", "items": items, "can_edit": staff.can(Perm.CONFIGURE)},
    )


def _form_page(
    request: Request, code: str | None, values: dict[str, Any], error: Any = None, status_code: int = 200
) -> Response:
    return render(
        request,
        "admin/segment_form.html",
        {
            "active": "segments",
            "code": code,
            "values": values,
            "rows": _rows_of(values.get("conditions", [])),
            "ops": OPS,
            "op_labels": OP_LABELS,
            "fields": FIELD_LABELS,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/segments/new")
def new_segment(request: Request, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    return _form_page(request, None, {"match": "all", "conditions": []})


def _typed(form: FormData) -> dict[str, Any]:
    return {
        "code": text(form, "code"),
        "name": text(form, "name"),
        "description": text(form, "description"),
        "match": text(form, "match") or "all",
        "conditions": _conditions(form),
    }


@router.post("/segments/new")
def create_segment(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = staff_required(Perm.CONFIGURE)
) -> Response:
    body = _typed(form)
    try:
        segment = db(request).write(lambda s: segments.create(s, staff.actor, build(SegmentIn, body)))
    except PatronError as exc:
        return _form_page(request, None, body, describe(exc, i18n.gettext(request)), exc.status)
    _ = i18n.gettext(request)
    message = _("The segment “%(name)s” is created; its members are counted at the next refresh.")
    security.flash(request, message % {"name": segment.name})
    return redirect(f"/admin/segments/{segment.code}")


@router.get("/segments/{code}")
def segment_page(request: Request, code: str, staff: Staff = staff_required(Perm.READ_ALL)) -> Response:
    def run(s: Session) -> dict[str, Any]:
        segment = segments.to_out(s, segments.get(s, code))
        sizes, _ = segments.sizes_page(s, code, limit=60, cursor=None)
        rows, _next, total = segments.members_page(s, code, limit=20, cursor=None)
        return {
            "segment": segment,
            "sizes": list(reversed(sizes)),
            "members": members.present_many(s, rows),
            "total": total,
        }

    data = db(request).read(run)
    lang = i18n.request_language(request)
    _ = i18n.gettext(request)
    chart = None
    if data["sizes"]:
        chart = charts.series(
            _("Size at each refresh"),
            [i18n.day(x.measured_at, lang, "short") for x in data["sizes"]],
            [(_("Members"), [x.size for x in data["sizes"]])],
        )
    return render(
        request,
        "admin/segment.html",
        {
            "active": "segments",
            **data,
            "chart": chart,
            "fields": FIELD_LABELS,
            "op_labels": OP_LABELS,
            "can_edit": staff.can(Perm.CONFIGURE),
        },
    )


@router.get("/segments/{code}/edit")
def edit_segment(request: Request, code: str, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    segment = db(request).read(lambda s: segments.to_out(s, segments.get(s, code)))
    values = segment.model_dump(mode="json")
    values["description"] = values.get("description") or ""
    return _form_page(request, code, values)


@router.post("/segments/{code}/edit")
def update_segment(
    request: Request,
    code: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    body = _typed(form)
    patch = {k: body[k] for k in ("name", "description", "match", "conditions")}
    try:
        segment = db(request).write(lambda s: segments.update(s, staff.actor, code, build(SegmentPatch, patch)))
    except PatronError as exc:
        return _form_page(request, code, {**body, "code": code}, describe(exc, i18n.gettext(request)), exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The segment “%(name)s” is saved.") % {"name": segment.name})
    return redirect(f"/admin/segments/{code}")


@router.post("/segments/{code}/delete")
def delete_segment(
    request: Request,
    code: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    try:
        db(request).write(lambda s: segments.delete_segment(s, staff.actor, code))
    except PatronError as exc:
        info = describe(exc, i18n.gettext(request))
        security.flash(request, f"{info.title}. {info.detail}".strip(), kind="error")
        return redirect(f"/admin/segments/{code}")
    _ = i18n.gettext(request)
    security.flash(request, _("The segment is deleted."))
    return redirect("/admin/segments")
