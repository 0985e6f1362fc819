"""Errors as people read them: translated titles by stable code, pages for the web paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from patron.errors import PatronError
from patron.web import i18n, security
from patron.web.i18n import N_

# One translated sentence per stable error code: what the person sees as the heading.
TITLES: dict[str, str] = {
    "validation_error": N_("Please check what you entered"),
    "unauthorized": N_("Please sign in"),
    "forbidden": N_("Your role does not allow this"),
    "csrf_failed": N_("The form expired or did not come from this site. Reload the page and try again."),
    "not_found": N_("Not found"),
    "method_not_allowed": N_("This address does not accept this kind of request"),
    "rate_limited": N_("Too many attempts. Wait a while and try again."),
    "conflict": N_("Refused"),
    "member_exists": N_("A member with this email or phone already exists"),
    "member_blocked": N_("The member is blocked"),
    "card_in_use": N_("The card number belongs to another member"),
    "card_blocked": N_("The card is blocked"),
    "card_state": N_("The card cannot do this in its current status"),
    "insufficient_points": N_("Not enough points available"),
    "idempotency_conflict": N_("This operation was already done with different values"),
    "coupon_used": N_("The coupon has already been used"),
    "coupon_expired": N_("The coupon has expired"),
    "coupon_not_owned": N_("The coupon belongs to another member"),
    "coupon_not_applicable": N_("The coupon does not apply to this purchase"),
    "out_of_stock": N_("The reward is out of stock"),
    "limit_reached": N_("The member has reached the limit for this reward"),
    "not_eligible": N_("The member is not eligible"),
    "approval_required": N_("This action needs a second person's approval"),
    "segment_exists": N_("A segment with this code already exists"),
    "segment_protected": N_("The segment ships with the programme and cannot be deleted"),
    "segment_in_use": N_("Earning rules are restricted to this segment"),
    "internal_error": N_("Something went wrong on our side"),
}

# Service messages that reach people often enough to translate word for word; anything else is
# shown as the service wrote it (English) under the translated title.
DETAILS: tuple[str, ...] = (
    N_("this field is required"),
    N_("points must not be zero"),
    N_("a password needs at least 8 characters"),
    N_("not a valid email address"),
    N_("not a valid phone number"),
    N_("a card number has only digits"),
    N_("ends_at must be after starts_at"),
    N_("min_total cannot be negative"),
    N_("factor must be above zero"),
    N_("per_amount must be above zero"),
    N_("a spend rule needs points above zero"),
    N_("a category rule needs points above zero"),
    N_("a sku rule needs points above zero"),
    N_("a visit rule needs points above zero"),
    N_("a event rule needs points above zero"),
    N_("a welcome rule needs points above zero"),
    N_("a birthday rule needs points above zero"),
    N_("a referral rule needs points above zero"),
    N_("a spend rule needs per_amount"),
    N_("a category rule needs per_amount"),
    N_("a category rule needs category"),
    N_("a sku rule needs sku"),
    N_("a multiplier rule needs factor"),
    N_("an event rule needs event_type"),
    N_("a segment needs at least one condition"),
    N_("The member is blocked and cannot earn, redeem or claim"),
    N_("No such member"),
    N_("No such card"),
    N_("No such earning rule"),
    N_("No such segment"),
    N_("No such API key"),
    N_("Reload the page and send the form again."),
    N_("Not enough points available"),
)


def _title(code: str, translate: Callable[[str], str], fallback: str = "") -> str:
    return translate(TITLES.get(code, fallback or code))


@dataclass
class Described:
    status: int
    code: str
    title: str
    detail: str
    errors: list[tuple[str, str]] = field(default_factory=list)  # (field, message)


def describe(exc: Exception, _: Callable[[str], str]) -> Described:
    """A translated heading, the detail (translated when catalogued) and the field errors."""
    if isinstance(exc, PatronError):
        title = _title(exc.code, _, exc.title)
        field_errors = [
            (str(e.get("field", "")), _(str(e.get("message", ""))))
            for e in exc.extra.get("errors", [])
            if isinstance(e, dict)
        ]
        detail = _(exc.detail)
        if field_errors and len(field_errors) == 1 and field_errors[0][1] == detail:
            detail = ""
        return Described(exc.status, exc.code, title, detail, field_errors)
    if isinstance(exc, RequestValidationError):
        errs = [
            (".".join(str(p) for p in e.get("loc", ())[1:]), _(str(e.get("msg", "")).removeprefix("Value error, ")))
            for e in exc.errors()
        ]
        return Described(422, "validation_error", _title("validation_error", _), "", errs)
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
            exc.status_code, "conflict"
        )
        return Described(exc.status_code, code, _title(code, _), "")
    return Described(500, "internal_error", _title("internal_error", _), "")


async def page_for(request: Request, exc: Exception) -> Response:
    from patron.web.templating import render

    request.state.lang = i18n.choose(request)
    await security.current_staff(request)
    info = describe(exc, i18n.gettext(request))
    response = await run_in_threadpool(render, request, "error.html", {"error": info}, status_code=info.status)
    headers = getattr(exc, "headers", None)
    if isinstance(headers, dict):
        response.headers.update(headers)
    return response


async def sign_in_required(request: Request, exc: Exception) -> Response:
    from patron.web.templating import redirect

    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/admin/sign-in?next={quote(target, safe='')}")


landing_router = APIRouter(include_in_schema=False)


@landing_router.get("/")
def landing(request: Request) -> Response:
    """The programme's front door: the back office, and the POS and portal when they exist."""
    from patron.web.templating import render

    request.state.lang = i18n.choose(request)
    mounted = set(getattr(request.app.state, "web_areas", ()))
    areas = [(key, f"/{key}") for key in ("admin", "pos", "portal") if key in mounted]
    return render(request, "landing.html", {"areas": areas})
