"""The cashier's screen: identify, sell (with coupons and points), enrol, print the card.

Thin views over the same services as the API. Posting a purchase and enrolling run through the
idempotency record with an `external_id` made when the form was shown, so a double click, a
reload or a retry does it once and shows the first result.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access.roles import Perm
from patron.cards import service as cards
from patron.errors import NotFound, PatronError, ValidationFailed
from patron.ledger import service as ledger
from patron.members import service as members
from patron.members.schemas import ConsentsIn, MemberCreate
from patron.program import service as program_service
from patron.rewards import images
from patron.rewards import service as rewards
from patron.transactions import service as transactions
from patron.transactions.schemas import ItemIn, TransactionIn, TransactionOut
from patron.web import errors, i18n, security
from patron.web.admin.common import checked, new_external_id, optional, text
from patron.web.i18n import N_
from patron.web.idempotent import as_refusal, external_id, once
from patron.web.pos import lookup
from patron.web.security import Staff
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter()
CASHIER = Perm.TRANSACT  # cashier, agent and admin
add_menu_item(MenuItem("pos", N_("Till"), "/pos", CASHIER, order=5))

# Service messages a cashier meets at the till, translated word for word under the error's title
# (see errors.describe); anything else shows as the service wrote it.
DETAILS = (
    N_("No member with this card"),
    N_("No member with this phone"),
    N_("No member with this email"),
    N_("No member with this card or phone"),
    N_("No member with this card, phone or code"),
    N_("Swipe a card or type a number"),
    N_("No such coupon"),
    N_("No such transaction"),
    N_("The card is blocked"),
    N_("The card was replaced by a new one"),
    N_("The card number belongs to another member"),
    N_("no magnetic-stripe track data found"),
    N_("track 1 and track 2 carry different card numbers"),
    N_("not a valid card number (check digit does not match)"),
    N_("the member has to accept the programme rules"),
    N_("give an email or a phone (or both)"),
    N_("give items or a total"),
    N_("total cannot be negative"),
    N_("the points redeemed are worth more than is left to pay"),
    N_("points to pay with must be a whole number"),
    N_("birth_date must be a date (YYYY-MM-DD)"),
    N_("birth_date must be a real date in the past"),
    N_("The form expired. Reload the page and send it again."),
    N_("A member with this email or phone already exists"),
)


def _db(request: Request) -> Any:
    return security.db_of(request)


def _page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return render(request, f"pos/{template}", {"active": "pos", **context}, status_code=status_code)


def _member_key(member_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(member_id)
    except ValueError as exc:
        raise NotFound("No such member") from exc


def _input_error(exc: Exception, _: Any) -> errors.Described:
    """A refusal or a form that does not parse, as the cashier reads it."""
    return errors.describe(as_refusal(exc), _)


# --- Identify -----------------------------------------------------------------------------------------


@router.get("")
def start(request: Request, staff: Staff = security.staff_required(CASHIER)) -> Response:
    return _page(request, "identify.html", {"error": None})


@router.post("/identify")
def identify(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = security.staff_required(CASHIER)
) -> Response:
    _ = i18n.gettext(request)
    raw = form.get("q")
    secret = security.secret_of(request)
    try:
        found = _db(request).read(lambda s: lookup.find(s, raw if isinstance(raw, str) else "", secret))
    except PatronError as exc:
        # The field is not filled in again: a swipe's track 1 carries the cardholder's name.
        return _page(request, "identify.html", {"error": errors.describe(exc, _)}, exc.status)
    target = f"/pos/members/{found.member.id}"
    if found.coupon:
        target += f"?coupon={rewards.squeeze_code(found.coupon)}"
    return redirect(target)


# --- The customer and the purchase ----------------------------------------------------------------------


def _customer(session: Session, member_id: uuid.UUID) -> dict[str, Any]:
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    program = program_service.get(session)
    coupons, _next = rewards.member_coupons(session, member_id, status="issued", limit=50, cursor=None)
    owned = [c for c in cards.member_cards(session, member_id) if c.kind == "loyalty" and c.status == "active"]
    return {
        "member": members.present(session, member),
        "points": ledger.summary(session, member_id),
        "coupons": coupons,
        "cards": owned,
        "point_value": program_service.point_value(program),
        "currency": program.currency,
    }


def _sale_page(
    request: Request,
    member_id: uuid.UUID,
    *,
    key: str,
    error: errors.Described | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    data = _db(request).read(lambda s: _customer(s, member_id))
    scanned = rewards.normalise_code(request.query_params.get("coupon", ""))
    defaults = {
        "total": "",
        "lines": [{"sku": "", "qty": "1", "price": ""}],
        "coupons": rewards.display_code(scanned) if scanned else "",
        "picked": [],
        "redeem_points": "",
    }
    context = {**data, "external_id": key, "error": error, "values": values or defaults}
    return _page(request, "member.html", context, status_code)


@router.get("/members/{member_id}")
def customer(request: Request, member_id: str, staff: Staff = security.staff_required(CASHIER)) -> Response:
    return _sale_page(request, _member_key(member_id), key=new_external_id("pos"))


_SPLIT = re.compile(r"[\s,;]+")


def _form_values(form: FormData) -> dict[str, Any]:
    skus, qtys, prices = form.getlist("sku"), form.getlist("qty"), form.getlist("price")
    lines = [
        {"sku": str(s).strip(), "qty": str(q).strip() or "1", "price": str(p).strip()}
        for s, q, p in zip(skus, qtys, prices, strict=False)
    ]
    return {
        "total": text(form, "total"),
        "lines": [line for line in lines if line["sku"] or line["price"]] or [{"sku": "", "qty": "1", "price": ""}],
        "coupons": text(form, "coupons"),
        "picked": [str(v) for v in form.getlist("coupon")],
        "redeem_points": text(form, "redeem_points"),
    }


def _whole(value: str) -> int:
    if not value:
        return 0
    if not value.isdigit():
        raise ValidationFailed("points to pay with must be a whole number", field="redeem_points")
    return int(value)


def _birth_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed("birth_date must be a date (YYYY-MM-DD)", field="birth_date") from exc


def _purchase(member_id: uuid.UUID, key: str, values: dict[str, Any]) -> TransactionIn:
    items = [
        ItemIn(sku=line["sku"], quantity=line["qty"], unit_price=line["price"])
        for line in values["lines"]
        if line["sku"] or line["price"]
    ]
    codes: list[str] = []
    for code in [*_SPLIT.split(values["coupons"]), *values["picked"]]:
        squeezed = rewards.squeeze_code(code) if code.strip() else ""
        if squeezed and squeezed not in codes:
            codes.append(squeezed)
    return TransactionIn(
        external_id=key,
        member_id=member_id,
        channel="pos",
        items=items or None,
        total=values["total"] or None,
        coupons=codes,
        redeem_points=_whole(values["redeem_points"]),
    )


@router.post("/members/{member_id}/purchase")
def post_purchase(
    request: Request,
    member_id: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = security.staff_required(CASHIER),
) -> Response:
    _ = i18n.gettext(request)
    member_key = _member_key(member_id)
    key = external_id(form.get("external_id"))
    values = _form_values(form)
    secret = security.secret_of(request)
    try:
        data = _purchase(member_key, key, values)

        def run(s: Session) -> tuple[dict[str, Any], bool]:
            payload = data.model_dump(mode="json")
            return once(
                s, "transaction", data.external_id, payload, lambda: transactions.post(s, staff.actor, data, secret)
            )

        answer, _replayed = _db(request).write(run)
    except (PatronError, ValidationError, ValueError) as exc:
        error = _input_error(exc, _)
        # The same external_id again: nothing was recorded, and a double click stays one purchase.
        return _sale_page(request, member_key, key=key, error=error, values=values, status_code=error.status)
    return redirect(f"/pos/receipts/{answer['id']}")


@router.get("/receipts/{transaction_id}")
def receipt(request: Request, transaction_id: str, staff: Staff = security.staff_required(CASHIER)) -> Response:
    def run(s: Session) -> dict[str, Any]:
        txn = transactions.get(s, _member_key(transaction_id))
        answer = TransactionOut.model_validate(txn.answer)
        member = members.get(s, txn.member_id)
        return {"answer": answer, "member": members.present(s, member), "currency": txn.currency}

    try:
        data = _db(request).read(run)
    except NotFound as exc:
        raise NotFound("No such transaction") from exc
    return _page(request, "receipt.html", data)


# --- Enrolment and the card ---------------------------------------------------------------------------


class Enrolled(BaseModel):
    """What a replayed enrolment needs: only ids, no personal data kept in the idempotency record."""

    id: uuid.UUID
    card: str


@router.get("/enrol")
def enrol_page(request: Request, staff: Staff = security.staff_required(Perm.ENROL)) -> Response:
    return _page(request, "enrol.html", {"error": None, "values": {}, "external_id": new_external_id("enrol")})


def _enrolment(form: FormData) -> MemberCreate:
    language = text(form, "language") or "en"
    return MemberCreate(
        first_name=text(form, "first_name"),
        last_name=text(form, "last_name"),
        phone=optional(form, "phone"),
        email=optional(form, "email"),
        birth_date=_birth_date(optional(form, "birth_date")),
        language=language,
        channel="pos",
        consents=ConsentsIn(
            program_rules=checked(form, "program_rules"),
            marketing_email=checked(form, "marketing_email"),
            marketing_sms=checked(form, "marketing_sms"),
            marketing_push=checked(form, "marketing_push"),
        ),
    )


@router.post("/enrol")
def enrol(
    request: Request,
    form: FormData = Depends(security.checked_form),
    staff: Staff = security.staff_required(Perm.ENROL),
) -> Response:
    _ = i18n.gettext(request)
    key = external_id(form.get("external_id"))
    fields = ("first_name", "last_name", "phone", "email", "birth_date", "language", "card")
    values: dict[str, Any] = {name: text(form, name) for name in fields}
    for name in ("marketing_email", "marketing_sms", "marketing_push", "program_rules"):
        values[name] = checked(form, name)
    try:
        data = _enrolment(form)
        card_number = optional(form, "card")

        def run(s: Session) -> tuple[dict[str, Any], bool]:
            payload = {**data.model_dump(mode="json"), "card": card_number}

            def work() -> Enrolled:
                member = members.enrol(s, staff.actor, data)
                card = cards.add_loyalty_card(s, staff.actor, member.id, card_number)
                return Enrolled(id=member.id, card=card.number or "")

            return once(s, "web-enrol", key, payload, work)

        enrolled, _replayed = _db(request).write(run)
    except (PatronError, ValidationError, ValueError) as exc:
        error = _input_error(exc, _)
        context = {"error": error, "values": values, "external_id": key}
        return _page(request, "enrol.html", context, status_code=error.status)
    security.flash(request, _("The customer is enrolled. Give them their card."))
    return redirect(f"/pos/members/{enrolled['id']}/card")


def _card_number(session: Session, member_id: uuid.UUID) -> tuple[Any, str]:
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    owned = [c for c in cards.member_cards(session, member_id) if c.kind == "loyalty" and c.status == "active"]
    return member, (owned[-1].number if owned and owned[-1].number else member.number)


@router.get("/members/{member_id}/card")
def printable_card(request: Request, member_id: str, staff: Staff = security.staff_required(CASHIER)) -> Response:
    member, number = _db(request).read(lambda s: _card_number(s, _member_key(member_id)))
    return _page(request, "card.html", {"member": member, "number": number})


def _svg(body: bytes) -> Response:
    return Response(body, media_type=images.SVG_MEDIA_TYPE, headers={"Cache-Control": "private, max-age=300"})


@router.get("/members/{member_id}/qr.svg")
def card_qr(request: Request, member_id: str, staff: Staff = security.staff_required(CASHIER)) -> Response:
    _member, number = _db(request).read(lambda s: _card_number(s, _member_key(member_id)))
    return _svg(images.qr_svg(number))


@router.get("/members/{member_id}/barcode.svg")
def card_barcode(request: Request, member_id: str, staff: Staff = security.staff_required(CASHIER)) -> Response:
    _member, number = _db(request).read(lambda s: _card_number(s, _member_key(member_id)))
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return _svg(images.barcode_svg(number, grouped))
