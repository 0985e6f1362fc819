"""Members: the searchable list and the member's 360 page with the agent's actions."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.analytics import members as member_reads
from patron.cards import service as cards
from patron.errors import NotFound, PatronError, ValidationFailed
from patron.ledger import service as ledger
from patron.ledger.schemas import AdjustmentIn
from patron.members import service as members
from patron.segments import service as segments
from patron.tiers import service as tiers
from patron.web import i18n, idempotent, security
from patron.web.admin.common import build, db, integer, new_external_id, optional, text
from patron.web.errors import Described, describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("members", N_("Members"), "/admin/members", Perm.MEMBERS_READ, order=20))

PAGE = 50


def _member_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound("No such member") from exc


@router.get("/members")
def member_list(
    request: Request,
    q: str | None = None,
    status: str | None = None,
    tier: str | None = None,
    segment: str | None = None,
    cursor: str | None = None,
    staff: Staff = staff_required(Perm.MEMBERS_READ),
) -> Response:
    def run(s: Session) -> dict[str, Any]:
        items, next_cursor = member_reads.find(
            s, q=q, status=status, tier=tier, segment=segment, limit=PAGE, cursor=cursor
        )
        return {
            "items": items,
            "next_cursor": next_cursor,
            "tiers": [(t.code, t.name) for t in tiers.ladder(s)],
            "segments": segments.codes(s),
        }

    data = db(request).read(run)
    next_url = None
    if data["next_cursor"]:
        params = request.query_params.multi_items()
        kept = "&".join(f"{k}={v}" for k, v in params if k != "cursor")
        next_url = f"/admin/members?{kept}&cursor={data['next_cursor']}".replace("?&", "?")
    filters = {"q": q or "", "status": status or "", "tier": tier or "", "segment": segment or ""}
    return render(
        request,
        "admin/members.html",
        {"active": "members", **data, "filters": filters, "next_url": next_url, "statuses": member_reads.STATUSES},
    )


def _page(
    request: Request,
    staff: Staff,
    member_id: uuid.UUID,
    *,
    errors: dict[str, Described] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    ledger_cursor = request.query_params.get("ledger_cursor")
    view = db(request).read(lambda s: member_reads.member_360(s, member_id, ledger_cursor=ledger_cursor))
    form_values = {"adjust_external_id": new_external_id("adjust"), **(values or {})}
    return render(
        request,
        "admin/member.html",
        {
            "active": "members",
            "v": view,
            "m": view.member,
            "errors": errors or {},
            "values": form_values,
            "can": {
                "adjust": staff.can(Perm.POINTS_ADJUST),
                "block": staff.can(Perm.MEMBERS_BLOCK),
                "cards": staff.can(Perm.CARDS),
            },
        },
        status_code=status_code,
    )


@router.get("/members/{member_id}")
def member_page(request: Request, member_id: str, staff: Staff = staff_required(Perm.MEMBERS_READ)) -> Response:
    return _page(request, staff, _member_id(member_id))


def _refused(
    request: Request, staff: Staff, member_id: uuid.UUID, form_key: str, exc: PatronError, values: dict[str, str]
) -> Response:
    info = describe(exc, i18n.gettext(request))
    return _page(request, staff, member_id, errors={form_key: info}, values=values, status_code=exc.status)


@router.post("/members/{member_id}/points")
def adjust_points(
    request: Request,
    member_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.POINTS_ADJUST),
) -> Response:
    key = _member_id(member_id)
    values = {k: text(form, k) for k in ("points", "reason", "adjust_external_id")}
    try:
        body = build(
            AdjustmentIn,
            {
                "external_id": values["adjust_external_id"] or new_external_id("adjust"),
                "points": integer(form, "points"),
                "reason": values["reason"],
            },
        )
        payload = {"member_id": str(key), **body.model_dump(mode="json")}

        # The API's idempotency scope and payload: a repeat of this form is a repeat of the call.
        db(request).write(
            lambda s: idempotent.once(
                s, "adjustment", body.external_id, payload, lambda: ledger.adjust(s, staff.actor, key, body)
            )
        )
    except PatronError as exc:
        return _refused(request, staff, key, "adjust", exc, values)
    _ = i18n.gettext(request)
    security.flash(request, _("Points adjusted by %(points)s.") % {"points": f"{body.points:+d}"})
    return redirect(f"/admin/members/{key}")


@router.post("/members/{member_id}/block")
def block_member(
    request: Request,
    member_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.MEMBERS_BLOCK),
) -> Response:
    key = _member_id(member_id)
    reason = text(form, "reason")
    _ = i18n.gettext(request)
    try:
        if not reason:
            raise ValidationFailed("this field is required", field="reason")
        db(request).write(lambda s: members.block(s, staff.actor, key, reason[:500]))
    except PatronError as exc:
        return _refused(request, staff, key, "block", exc, {"block_reason": reason})
    security.flash(request, _("The member is blocked."))
    return redirect(f"/admin/members/{key}")


@router.post("/members/{member_id}/unblock")
def unblock_member(
    request: Request,
    member_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.MEMBERS_BLOCK),
) -> Response:
    key = _member_id(member_id)
    try:
        db(request).write(lambda s: members.unblock(s, staff.actor, key))
    except PatronError as exc:
        return _refused(request, staff, key, "block", exc, {})
    _ = i18n.gettext(request)
    security.flash(request, _("The member is unblocked."))
    return redirect(f"/admin/members/{key}")


@router.post("/members/{member_id}/cards/{number}/block")
def block_card(
    request: Request,
    member_id: str,
    number: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CARDS),
) -> Response:
    key = _member_id(member_id)
    reason = text(form, "reason") or "blocked in the back office"
    try:
        db(request).write(lambda s: cards.block(s, staff.actor, _own_card(s, key, number), reason[:500]))
    except PatronError as exc:
        return _refused(request, staff, key, "cards", exc, {})
    _ = i18n.gettext(request)
    security.flash(request, _("The card is blocked."))
    return redirect(f"/admin/members/{key}")


@router.post("/members/{member_id}/cards/{number}/replace")
def replace_card(
    request: Request,
    member_id: str,
    number: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CARDS),
) -> Response:
    key = _member_id(member_id)
    new_number = optional(form, "new_number")
    try:
        card = db(request).write(lambda s: cards.replace(s, staff.actor, _own_card(s, key, number), new_number))
    except PatronError as exc:
        return _refused(request, staff, key, "cards", exc, {"new_number": new_number or ""})
    _ = i18n.gettext(request)
    security.flash(request, _("The card is replaced by %(number)s.") % {"number": card.number})
    return redirect(f"/admin/members/{key}")


@router.post("/members/{member_id}/cards")
def issue_card(
    request: Request,
    member_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.CARDS),
) -> Response:
    key = _member_id(member_id)
    number = optional(form, "number")
    try:
        card = db(request).write(lambda s: cards.add_loyalty_card(s, staff.actor, key, number))
    except PatronError as exc:
        return _refused(request, staff, key, "cards", exc, {"number": number or ""})
    _ = i18n.gettext(request)
    security.flash(request, _("Card %(number)s issued.") % {"number": card.number})
    return redirect(f"/admin/members/{key}")


def _own_card(session: Session, member_id: uuid.UUID, number: str) -> str:
    """The number, once it is sure the card is this member's: the page never acts on another's."""
    card = cards.get(session, number)
    if card.member_id != member_id:
        raise NotFound("No such card")
    return number
