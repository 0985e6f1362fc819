"""Earning rules: the list, a form to create and edit one, and (de)activation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.errors import NotFound, PatronError, ValidationFailed
from patron.members.schemas import Channel
from patron.program import service as program_service
from patron.rules import service as rules
from patron.rules.schemas import RuleIn, RuleKind, RuleOut, RulePatch
from patron.segments import service as segments
from patron.tiers import service as tiers
from patron.web import i18n, security
from patron.web.admin.common import build, checked, db, many, text
from patron.web.errors import describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("rules", N_("Earning rules"), "/admin/rules", Perm.READ_ALL, order=40))

KINDS: tuple[str, ...] = get_args(RuleKind)
CHANNELS: tuple[str, ...] = get_args(Channel)
KIND_LABELS = {
    "spend": N_("Points per amount spent"),
    "category": N_("Points per amount in a category"),
    "sku": N_("Points for a product or service (SKU)"),
    "visit": N_("Points per visit"),
    "multiplier": N_("Multiplier"),
    "event": N_("Bonus for an event"),
    "welcome": N_("Welcome bonus"),
    "birthday": N_("Birthday bonus"),
    "referral": N_("Referral bonus"),
}
FIELD_LABELS = {
    "name": N_("Name"),
    "kind": N_("Kind"),
    "points": N_("Points"),
    "per_amount": N_("Per amount"),
    "category": N_("Categories"),
    "sku": N_("SKUs"),
    "factor": N_("Factor"),
    "event_type": N_("Event type"),
    "max_points": N_("At most (points per purchase)"),
    "conditions.starts_at": N_("Starts"),
    "conditions.ends_at": N_("Ends"),
    "conditions.min_total": N_("Minimum total"),
    "conditions.weekdays": N_("Weekdays"),
}
WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
FIELDS = ("name", "kind", "points", "per_amount", "category", "sku", "factor", "event_type", "max_points")


def _rule_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound("No such earning rule") from exc


@router.get("/rules")
def rule_list(request: Request, staff: Staff = staff_required(Perm.READ_ALL)) -> Response:
    def run(s: Session) -> list[RuleOut]:
        out: list[RuleOut] = []
        cursor = None
        while True:
            rows, cursor = rules.listing(s, kind=None, active=None, limit=500, cursor=cursor)
            out += [rules.to_out(s, r) for r in rows]
            if cursor is None:
                return out

    items = db(request).read(run)
    return render(
        request,
        "admin/rules.html",
        {"active": "rules", "items": items, "kind_labels": KIND_LABELS, "can_edit": staff.can(Perm.CONFIGURE)},
    )


def _choices(s: Session) -> dict[str, Any]:
    return {
        "tiers": [(t.code, t.name) for t in tiers.ladder(s)],
        "segments": segments.codes(s),
        "timezone": program_service.get(s).timezone,
        "currency": program_service.get(s).currency,
    }


def _values_of(rule: RuleOut | None) -> dict[str, Any]:
    """The form's fields as text, from a stored rule (or the defaults of a new one)."""
    if rule is None:
        return {"kind": "spend", "active": True, "conditions": {}}

    def joined(value: str | list[str] | None) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else ", ".join(value)

    c = rule.conditions
    return {
        "name": rule.name,
        "kind": rule.kind,
        "points": str(rule.points),
        "per_amount": str(rule.per_amount) if rule.per_amount is not None else "",
        "category": joined(rule.category),
        "sku": joined(rule.sku),
        "factor": str(rule.factor) if rule.factor is not None else "",
        "event_type": rule.event_type or "",
        "max_points": str(rule.max_points) if rule.max_points is not None else "",
        "active": rule.active,
        "conditions": {
            "starts_at": c.starts_at,
            "ends_at": c.ends_at,
            "weekdays": c.weekdays or [],
            "channels": c.channels or [],
            "locations": ", ".join(c.locations or []),
            "tiers": c.tiers or [],
            "segments": c.segments or [],
            "min_total": str(c.min_total) if c.min_total is not None else "",
        },
    }


def _form_values(form: FormData) -> dict[str, Any]:
    """What was typed, to show the form again after a refusal."""
    values: dict[str, Any] = {name: text(form, name) for name in FIELDS}
    values["active"] = checked(form, "active")
    values["conditions"] = {
        "starts_at_text": text(form, "starts_at"),
        "ends_at_text": text(form, "ends_at"),
        "weekdays": [int(d) for d in many(form, "weekdays") if d.isdigit()],
        "channels": many(form, "channels"),
        "locations": text(form, "locations"),
        "tiers": many(form, "tiers"),
        "segments": many(form, "segments"),
        "min_total": text(form, "min_total"),
    }
    return values


def _local_time(value: str, field: str, tz: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed("enter a date and time", field=field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _payload(s: Session, form: FormData, *, creating: bool) -> dict[str, Any]:
    """The API's body for this form; empty fields are left out of a new rule and cleared on an edit."""
    tz = program_service.zone(program_service.get(s))
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = text(form, name)
        if name in ("category", "sku"):
            listed = many(form, name)
            values[name] = (listed[0] if len(listed) == 1 else listed) if listed else None
        else:
            values[name] = raw or None
    if not creating:
        values.pop("kind")
    values["active"] = checked(form, "active")
    conditions: dict[str, Any] = {
        "starts_at": _local_time(text(form, "starts_at"), "conditions.starts_at", tz),
        "ends_at": _local_time(text(form, "ends_at"), "conditions.ends_at", tz),
        "weekdays": [int(d) for d in many(form, "weekdays") if d.isdigit()] or None,
        "channels": many(form, "channels") or None,
        "locations": many(form, "locations") or None,
        "tiers": many(form, "tiers") or None,
        "segments": many(form, "segments") or None,
        "min_total": text(form, "min_total") or None,
    }
    values["conditions"] = {k: v for k, v in conditions.items() if v is not None}
    if creating:
        values = {k: v for k, v in values.items() if v is not None and v != ""}
    return values


def _form_page(
    request: Request, rule_id: uuid.UUID | None, values: dict[str, Any], error: Any = None, status_code: int = 200
) -> Response:
    choices = db(request).read(_choices)
    return render(
        request,
        "admin/rule_form.html",
        {
            "active": "rules",
            "rule_id": rule_id,
            "values": values,
            "error": error,
            "kinds": KINDS,
            "kind_labels": KIND_LABELS,
            "field_labels": FIELD_LABELS,
            "weekdays": WEEKDAYS,
            "channels": CHANNELS,
            **choices,
        },
        status_code=status_code,
    )


@router.get("/rules/new")
def new_rule(request: Request, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    return _form_page(request, None, _values_of(None))


@router.post("/rules/new")
def create_rule(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = staff_required(Perm.CONFIGURE)
) -> Response:
    try:
        rule = db(request).write(
            lambda s: rules.create(s, staff.actor, build(RuleIn, _payload(s, form, creating=True)))
        )
    except PatronError as exc:
        info = describe(exc, i18n.gettext(request))
        return _form_page(request, None, _form_values(form), info, exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The rule “%(name)s” is created.") % {"name": rule.name})
    return redirect("/admin/rules")


@router.get("/rules/{rule_id}")
def edit_rule(request: Request, rule_id: str, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    key = _rule_id(rule_id)
    rule = db(request).read(lambda s: rules.to_out(s, rules.get(s, key)))
    return _form_page(request, key, _values_of(rule))


@router.post("/rules/{rule_id}")
def update_rule(
    request: Request,
    rule_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    key = _rule_id(rule_id)
    try:
        rule = db(request).write(
            lambda s: rules.update(s, staff.actor, key, build(RulePatch, _payload(s, form, creating=False)))
        )
    except PatronError as exc:
        info = describe(exc, i18n.gettext(request))
        values = _form_values(form)
        values["kind"] = db(request).read(lambda s: rules.get(s, key).kind)
        return _form_page(request, key, values, info, exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The rule “%(name)s” is saved.") % {"name": rule.name})
    return redirect("/admin/rules")


@router.post("/rules/{rule_id}/active")
def toggle_rule(
    request: Request,
    rule_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    key = _rule_id(rule_id)
    active = checked(form, "active")
    rule = db(request).write(lambda s: rules.update(s, staff.actor, key, RulePatch(active=active)))
    _ = i18n.gettext(request)
    message = _("The rule “%(name)s” is active.") if active else _("The rule “%(name)s” is deactivated.")
    security.flash(request, message % {"name": rule.name})
    return redirect("/admin/rules")
