"""Rewards: the catalogue for every reader, a form to create and edit one, and (de)activation.

The form posts to the same service functions as the API (`rewards.service.create/update`), so
the checks and their messages are the API's. Two decisions of the screen:

* The form shows the fields of every kind; a script hides (and disables) those the chosen kind
  does not use. Without the script they are all sent and the service says what does not apply.
* Stock is changed by claims while the form is open. The form remembers the stock it showed and
  sends the field only when the person changed it, so saving a new name never puts back claimed
  units.
"""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.errors import NotFound, PatronError, ValidationFailed
from patron.rewards import service as rewards
from patron.rewards.schemas import RewardIn, RewardKind, RewardOut, RewardPatch
from patron.segments import service as segments
from patron.tiers import service as tiers
from patron.web import i18n, security
from patron.web.admin.common import build, checked, db, many, text
from patron.web.errors import Described, describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("rewards", N_("Rewards"), "/admin/rewards", Perm.MEMBERS_READ, order=45))

KINDS: tuple[str, ...] = get_args(RewardKind)
KIND_LABELS = {
    "percent_discount": N_("Percent discount"),
    "amount_discount": N_("Amount discount"),
    "free_item": N_("Free product or service"),
    "gift": N_("Gift"),
    "privilege": N_("Privilege"),
}
FIELD_LABELS = {
    "name": N_("Name"),
    "description": N_("Description"),
    "kind": N_("Kind"),
    "value": N_("Discount"),
    "sku": N_("SKU given free"),
    "max_discount": N_("Largest discount"),
    "cost_points": N_("Cost in points"),
    "stock": N_("Stock left"),
    "limit_per_member": N_("Limit per member"),
    "tiers": N_("Tiers"),
    "segments": N_("Segments"),
    "valid_days": N_("Coupon valid, days"),
    "active": N_("Active"),
}
# The kinds each kind-specific field belongs to; the other fields apply to every reward.
KIND_FIELDS = {
    "value": ("percent_discount", "amount_discount"),
    "max_discount": ("percent_discount",),
    "sku": ("free_item",),
}
# The service's messages for this form, translated word for word when they are shown.
MESSAGES = (
    N_("a percent discount is above 0 and at most 100"),
    N_("a percent has at most 4 decimal places"),
    N_("value must be above zero"),
    N_("max_discount must be above zero"),
    N_("value is too large"),
    N_("max_discount is too large"),
    N_("a percent_discount reward needs value (the percent)"),
    N_("an amount_discount reward needs value (the amount)"),
    N_("a free_item reward needs sku"),
    N_("sku does not apply to a percent_discount reward"),
    N_("sku does not apply to a amount_discount reward"),
    N_("sku does not apply to a gift reward"),
    N_("sku does not apply to a privilege reward"),
    N_("value does not apply to a free_item reward"),
    N_("value does not apply to a gift reward"),
    N_("value does not apply to a privilege reward"),
    N_("max_discount applies to percent_discount rewards only"),
    N_("No such reward"),
    N_("not a decimal number"),
    N_("Input should be greater than or equal to 0"),
    N_("Input should be greater than or equal to 1"),
    N_("Input should be a valid integer, unable to parse string as an integer"),
)
TEXTS = ("name", "description", "sku")
DECIMALS = ("value", "max_discount")
INTEGERS = ("cost_points", "stock", "limit_per_member", "valid_days")
REQUIRED = ("name", "cost_points", "valid_days")


def _reward_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound("No such reward") from exc


def _all(s: Session) -> list[RewardOut]:
    out: list[RewardOut] = []
    cursor = None
    while True:
        rows, cursor = rewards.listing(s, active=None, kind=None, limit=500, cursor=cursor)
        out += [rewards.to_out(s, r) for r in rows]
        if cursor is None:
            return out


def _tier_names(s: Session) -> dict[str, str]:
    return {t.code: t.name for t in tiers.ladder(s)}


@router.get("/rewards")
def reward_list(request: Request, staff: Staff = staff_required(Perm.MEMBERS_READ)) -> Response:
    items, tier_names = db(request).read(lambda s: (_all(s), _tier_names(s)))
    return render(
        request,
        "admin/rewards.html",
        {
            "active": "rewards",
            "items": items,
            "kind_labels": KIND_LABELS,
            "tier_names": tier_names,
            "can_edit": staff.can(Perm.CONFIGURE),
        },
    )


def _values_of(reward: RewardOut | None) -> dict[str, Any]:
    """The form's fields as text, from a stored reward (or the defaults of a new one)."""
    if reward is None:
        return {"kind": KINDS[0], "valid_days": "30", "active": True, "tiers": [], "segments": []}

    def shown(value: object) -> str:
        return "" if value is None else str(value)

    return {
        "name": reward.name,
        "description": reward.description or "",
        "kind": reward.kind,
        "value": shown(reward.value),
        "max_discount": shown(reward.max_discount),
        "sku": shown(reward.sku),
        "cost_points": shown(reward.cost_points),
        "stock": shown(reward.stock),
        "stock_was": shown(reward.stock),
        "limit_per_member": shown(reward.limit_per_member),
        "valid_days": shown(reward.valid_days),
        "tiers": reward.tiers,
        "segments": reward.segments,
        "active": reward.active,
        "claimed": reward.claimed,
    }


def _number(form: FormData, name: str) -> str:
    """As typed, without the spaces of digit grouping; a decimal comma read as a point."""
    raw = text(form, name).replace(" ", "").replace("\u00a0", "").replace("\u202f", "")
    return raw.replace(",", ".") if name in DECIMALS else raw


def _form_values(form: FormData) -> dict[str, Any]:
    """What was typed, to show the form again after a refusal."""
    values: dict[str, Any] = {name: text(form, name) for name in (*TEXTS, *DECIMALS, *INTEGERS, "kind", "stock_was")}
    values["tiers"] = many(form, "tiers")
    values["segments"] = many(form, "segments")
    values["active"] = checked(form, "active")
    return values


def _payload(form: FormData, kind: str | None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The API's body for this form (kind None: a new reward), and the required fields left empty.

    A new reward leaves out what is empty; an edit clears an empty optional field (stock and the
    per-member limit become unlimited) and sends the kind-specific fields of its own kind only."""
    values: dict[str, Any] = {name: text(form, name) for name in TEXTS}
    values.update({name: _number(form, name) for name in (*DECIMALS, *INTEGERS)})
    values["tiers"] = many(form, "tiers")
    values["segments"] = many(form, "segments")
    values["active"] = checked(form, "active")
    if kind is None:
        values["kind"] = text(form, "kind")
        return {k: v for k, v in values.items() if v != ""}, []
    missing = [{"field": name, "message": "this field is required"} for name in REQUIRED if values[name] == ""]
    for name, kinds in KIND_FIELDS.items():
        if kind not in kinds:
            values.pop(name)
    if _number(form, "stock") == _number(form, "stock_was"):
        values.pop("stock")
    out = {k: (None if v == "" and k not in ("description",) else v) for k, v in values.items()}
    return {k: v for k, v in out.items() if k not in REQUIRED or v is not None}, missing


def _reward_in(form: FormData) -> RewardIn:
    body, _missing = _payload(form, None)
    return build(RewardIn, body)


def _patch(form: FormData, kind: str) -> RewardPatch:
    body, missing = _payload(form, kind)
    errors = list(missing)
    try:
        patch = build(RewardPatch, body)
    except ValidationFailed as exc:
        errors += exc.extra["errors"]
    if errors:
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
    return patch


def _described(request: Request, exc: PatronError) -> Described:
    info = describe(exc, i18n.gettext(request))
    if info.errors:
        info.detail = ""  # the field errors say it, each next to its field
    return info


def _field_errors(info: Described | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for field, message in info.errors if info else []:
        out.setdefault(field.split(".")[0], []).append(message)
    return out


def _form_page(
    request: Request,
    reward_id: uuid.UUID | None,
    values: dict[str, Any],
    error: Described | None = None,
    status_code: int = 200,
) -> Response:
    tier_choices, segment_codes = db(request).read(
        lambda s: ([(t.code, t.name) for t in tiers.ladder(s)], segments.codes(s))
    )
    return render(
        request,
        "admin/reward_form.html",
        {
            "active": "rewards",
            "reward_id": reward_id,
            "values": values,
            "error": error,
            "field_errors": _field_errors(error),
            "kinds": KINDS,
            "kind_labels": KIND_LABELS,
            "kind_fields": KIND_FIELDS,
            "field_labels": FIELD_LABELS,
            "tiers": tier_choices,
            "segments": [(code, code) for code in segment_codes],
        },
        status_code=status_code,
    )


@router.get("/rewards/new")
def new_reward(request: Request, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    return _form_page(request, None, _values_of(None))


@router.post("/rewards/new")
def create_reward(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = staff_required(Perm.CONFIGURE)
) -> Response:
    try:
        data = _reward_in(form)
        reward = db(request).write(lambda s: rewards.create(s, staff.actor, data))
    except PatronError as exc:
        return _form_page(request, None, _form_values(form), _described(request, exc), exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The reward “%(name)s” is created.") % {"name": reward.name})
    return redirect("/admin/rewards")


@router.get("/rewards/{reward_id}")
def edit_reward(request: Request, reward_id: str, staff: Staff = staff_required(Perm.CONFIGURE)) -> Response:
    key = _reward_id(reward_id)
    reward = db(request).read(lambda s: rewards.to_out(s, rewards.get(s, key)))
    return _form_page(request, key, _values_of(reward))


@router.post("/rewards/{reward_id}")
def update_reward(
    request: Request,
    reward_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    key = _reward_id(reward_id)
    stored = db(request).read(lambda s: rewards.to_out(s, rewards.get(s, key)))
    try:
        patch = _patch(form, stored.kind)
        reward = db(request).write(lambda s: rewards.update(s, staff.actor, key, patch))
    except PatronError as exc:
        values = _form_values(form)
        values.update(kind=stored.kind, claimed=stored.claimed)
        return _form_page(request, key, values, _described(request, exc), exc.status)
    _ = i18n.gettext(request)
    security.flash(request, _("The reward “%(name)s” is saved.") % {"name": reward.name})
    return redirect("/admin/rewards")


@router.post("/rewards/{reward_id}/active")
def toggle_reward(
    request: Request,
    reward_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CONFIGURE),
) -> Response:
    key = _reward_id(reward_id)
    active = checked(form, "active")
    reward = db(request).write(lambda s: rewards.update(s, staff.actor, key, RewardPatch(active=active)))
    _ = i18n.gettext(request)
    message = _("The reward “%(name)s” is active.") if active else _("The reward “%(name)s” is deactivated.")
    security.flash(request, message % {"name": reward.name})
    return redirect("/admin/rewards")
