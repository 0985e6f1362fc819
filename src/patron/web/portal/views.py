"""The member portal's pages: thin views over the portal, rewards, ledger and members services.

Every page that shows member data takes the signed-in member from `current_member` and passes its
id to the services; nothing here reads an id of a member from the URL or the form. A coupon or a
purchase of someone else is answered 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.errors import NotFound, PatronError, TooManyRequests, ValidationFailed
from patron.kit.money import from_minor
from patron.ledger import service as ledger
from patron.mail import service as mail
from patron.mail.templates import render as render_mail
from patron.members import service as members
from patron.members.schemas import ConsentsPatch, MemberPatch
from patron.portal import service as portal
from patron.rewards import images
from patron.rewards import service as rewards
from patron.rewards.schemas import ClaimIn
from patron.web import errors, i18n, security
from patron.web.admin.common import checked, new_external_id, optional, text
from patron.web.idempotent import as_refusal, external_id, once
from patron.web.portal import session as member_session
from patron.web.portal.session import Me, current_member, to_sign_in
from patron.web.templating import redirect, render

router = APIRouter()

NAV = (
    ("home", "/portal", i18n.N_("Home")),
    ("history", "/portal/history", i18n.N_("History")),
    ("rewards", "/portal/rewards", i18n.N_("Rewards")),
    ("wallet", "/portal/wallet", i18n.N_("Wallet")),
    ("profile", "/portal/profile", i18n.N_("Profile")),
)


def _db(request: Request) -> Any:
    return security.db_of(request)


def _page(request: Request, template: str, me: Me | None, context: dict[str, Any], status_code: int = 200) -> Response:
    return render(request, f"portal/{template}", {"me": me, "portal_nav": NAV, **context}, status_code=status_code)


def _deliver_after_commit(request: Request, tasks: BackgroundTasks, message_id: uuid.UUID | None) -> None:
    """The code goes out after the answer: the transaction that queued it has committed by now.
    If SMTP fails here, the message stays queued and the worker's deliver_pending retries it."""
    if message_id is not None:
        tasks.add_task(mail.deliver, _db(request), [message_id])


# --- Sign-in ------------------------------------------------------------------------------------------


@router.get("/sign-in")
def sign_in_page(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is not None:
        return redirect("/portal")
    return _page(request, "sign_in.html", None, {"address": "", "error": None})


@router.post("/sign-in")
def sign_in(request: Request, tasks: BackgroundTasks, form: FormData = Depends(security.checked_form)) -> Response:
    _ = i18n.gettext(request)
    address = text(form, "address")
    secret = security.secret_of(request)
    try:
        started = _db(request).write(lambda s: portal.start_sign_in(s, address, secret, render_mail))
    except (ValidationFailed, TooManyRequests) as exc:
        error = errors.describe(exc, _)
        if isinstance(exc, ValidationFailed):
            error.title, error.detail, error.errors = _("Enter the email address of your membership."), "", []
        return _page(request, "sign_in.html", None, {"address": address, "error": error}, exc.status)
    member_session.remember_sign_in(request, started.sign_in_id)
    _deliver_after_commit(request, tasks, started.message_id)
    return redirect("/portal/sign-in/code")


@router.get("/sign-in/code")
def code_page(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is not None:
        return redirect("/portal")
    if member_session.pending_sign_in(request) is None:
        return redirect("/portal/sign-in")
    return _page(request, "code.html", None, {"error": None, "ended": False})


@router.post("/sign-in/code")
def check_code(request: Request, form: FormData = Depends(security.checked_form)) -> Response:
    _ = i18n.gettext(request)
    sign_in_id = member_session.pending_sign_in(request)
    code = text(form, "code")
    secret = security.secret_of(request)

    def run(s: Session) -> tuple[portal.Verified, str | None]:
        verified = portal.verify(s, sign_in_id, code, secret)
        token = portal.open_session(s, verified.member_id) if verified.member_id else None
        return verified, token

    verified, token = _db(request).write(run)
    if token is not None:
        member_session.start(request, token)
        return redirect("/portal")
    messages = {
        portal.Verdict.WRONG: _("The code is not right. Tries left: %(n)s.") % {"n": verified.attempts_left},
        portal.Verdict.EXPIRED: _("The code has expired. Ask for a new one."),
        portal.Verdict.LOCKED: _("Too many wrong codes. Ask for a new one."),
        portal.Verdict.ENDED: _("This sign-in has ended. Ask for a new code."),
    }
    ended = verified.verdict != portal.Verdict.WRONG
    status = 422 if verified.verdict == portal.Verdict.WRONG else 409
    return _page(request, "code.html", None, {"error": messages[verified.verdict], "ended": ended}, status)


@router.post("/sign-in/resend")
def resend(request: Request, tasks: BackgroundTasks, form: FormData = Depends(security.checked_form)) -> Response:
    _ = i18n.gettext(request)
    sign_in_id = member_session.pending_sign_in(request)
    secret = security.secret_of(request)
    try:
        resent = _db(request).write(lambda s: portal.resend(s, sign_in_id, secret, render_mail))
    except NotFound:
        return redirect("/portal/sign-in")
    if resent.refused == portal.ResendRefused.TOO_SOON:
        security.flash(request, _("Wait %(n)s seconds before asking again.") % {"n": resent.wait_seconds}, "error")
    elif resent.refused == portal.ResendRefused.LIMIT:
        security.flash(request, _("No more codes can be sent for now. Try again later."), "error")
    else:
        _deliver_after_commit(request, tasks, resent.message_id)
        security.flash(request, _("We sent a new code. The previous one no longer works."))
    return redirect("/portal/sign-in/code")


@router.post("/sign-out")
def sign_out(request: Request, form: FormData = Depends(security.checked_form)) -> Response:
    token = member_session.token_of(request)
    _db(request).write(lambda s: portal.close_session(s, token))
    member_session.end(request)
    _ = i18n.gettext(request)
    security.flash(request, _("You have signed out."))
    return redirect("/portal/sign-in")


# --- Home, card, history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierView:
    name: str
    next_name: str | None
    metric: str
    value: str
    needed: str | None
    percent: int


def _tier_view(session: Session, member_out: Any) -> TierView:
    from patron.tiers import service as tiers

    names = tiers.names(session)
    progress = member_out.tier_progress
    percent = 100
    if progress.needed is not None:
        value, needed = Decimal(str(progress.value)), Decimal(str(progress.needed))
        percent = int(value * 100 / (value + needed)) if value + needed > 0 else 0
    return TierView(
        name=member_out.tier.name,
        next_name=names.get(progress.next_tier, progress.next_tier) if progress.next_tier else None,
        metric=progress.metric,
        value=str(progress.value),
        needed=str(progress.needed) if progress.needed is not None else None,
        percent=percent,
    )


@router.get("")
def home(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()

    def run(s: Session) -> dict[str, Any]:
        member = members.get(s, me.id)
        out = members.present(s, member)
        return {
            "member": out,
            "points": ledger.summary(s, me.id),
            "tier": _tier_view(s, out),
            "deletion": portal.pending_deletion(s, me.id),
        }

    return _page(request, "home.html", me, {"active_tab": "home", **_db(request).read(run)})


@router.get("/card")
def card(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()
    from patron.cards import service as cards

    def run(s: Session) -> dict[str, Any]:
        owned = [c for c in cards.member_cards(s, me.id) if c.kind == "loyalty" and c.status == "active"]
        return {"member": members.present(s, members.get(s, me.id)), "cards": owned}

    return _page(request, "card.html", me, {"active_tab": "home", **_db(request).read(run)})


def _svg(body: bytes) -> Response:
    return Response(body, media_type=images.SVG_MEDIA_TYPE, headers={"Cache-Control": "private, max-age=300"})


@router.get("/card/qr.svg")
def my_qr(me: Me | None = Depends(current_member)) -> Response:
    """The member's own QR for the till: it carries the member number, which the POS identifies."""
    if me is None:
        raise NotFound("Not signed in")
    return _svg(images.qr_svg(me.number))


@router.get("/card/barcode.svg")
def my_barcode(me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        raise NotFound("Not signed in")
    return _svg(images.barcode_svg(me.number))


@router.get("/history")
def history(request: Request, cursor: str | None = None, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()

    def run(s: Session) -> dict[str, Any]:
        entries, next_cursor = ledger.entries(s, me.id, limit=30, cursor=cursor)
        purchases = portal.transactions(s, me.id, limit=30) if cursor is None else []
        return {"entries": entries, "next_cursor": next_cursor, "purchases": purchases}

    data = _db(request).read(run)
    next_url = f"/portal/history?cursor={data['next_cursor']}" if data["next_cursor"] else None
    return _page(request, "history.html", me, {"active_tab": "history", "next_url": next_url, **data})


@router.get("/history/{transaction_id}")
def purchase(request: Request, transaction_id: str, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()

    def run(s: Session) -> dict[str, Any]:
        txn = portal.own_transaction(s, me.id, transaction_id)
        lines = [
            {
                "name": line.name or line.sku,
                "quantity": line.quantity,
                "total": from_minor(line.total_minor, txn.currency),
            }
            for line in portal.transaction_lines(s, txn.id)
        ]
        return {"txn": txn, "answer": txn.answer, "lines": lines}

    return _page(request, "purchase.html", me, {"active_tab": "history", **_db(request).read(run)})


# --- Rewards and the wallet ---------------------------------------------------------------------------------


@router.get("/rewards")
def rewards_page(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()

    def run(s: Session) -> dict[str, Any]:
        catalogue = rewards.member_catalogue(s, me.id, limit=200, cursor=None)
        return {"rewards": catalogue.items, "points": ledger.summary(s, me.id)}

    data = _db(request).read(run)
    # One external_id per reward per page shown: a double submit of one form claims once.
    claim_ids = {str(r.id): new_external_id("claim") for r in data["rewards"]}
    return _page(
        request,
        "rewards.html",
        me,
        {"active_tab": "rewards", "claim_ids": claim_ids, "reasons": errors.TITLES, **data},
    )


@router.post("/rewards/{reward_id}/claim")
def claim(
    request: Request,
    reward_id: str,
    form: FormData = Depends(security.checked_form),
    me: Me | None = Depends(current_member),
) -> Response:
    if me is None:
        return to_sign_in()
    _ = i18n.gettext(request)
    try:
        reward_key = uuid.UUID(reward_id)
    except ValueError as exc:
        raise NotFound("No such reward") from exc
    try:
        body = ClaimIn(external_id=external_id(form.get("external_id")))
    except ValidationError as exc:
        raise ValidationFailed("The form expired. Reload the page and send it again.", field="external_id") from exc
    payload = {"member_id": str(me.id), "reward_id": str(reward_key), **body.model_dump(mode="json")}
    actor = portal.member_actor(me.id)
    try:
        coupon, _replayed = _db(request).write(
            lambda s: once(
                s, "claim", body.external_id, payload, lambda: rewards.claim(s, actor, me.id, reward_key, body)
            )
        )
    except PatronError as exc:
        if exc.status == 404:
            raise
        security.flash(request, errors.describe(exc, _).title, "error")
        return redirect("/portal/rewards")
    security.flash(request, _("Done! The coupon is in your wallet."))
    return redirect(f"/portal/wallet/{rewards.squeeze_code(coupon['code'])}")


@router.get("/wallet")
def wallet(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()

    def run(s: Session) -> dict[str, Any]:
        coupons, _next = rewards.member_coupons(s, me.id, status=None, limit=200, cursor=None)
        return {"coupons": coupons}

    return _page(request, "wallet.html", me, {"active_tab": "wallet", **_db(request).read(run)})


def _own_coupon(session: Session, me: Me, code: str) -> Any:
    coupon = rewards.find(session, code)
    if coupon.member_id != me.id:
        raise NotFound("No such coupon")
    return coupon


@router.get("/wallet/{code}")
def coupon_page(request: Request, code: str, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()
    out = _db(request).read(lambda s: rewards.coupon_out(s, _own_coupon(s, me, code)))
    squeezed = rewards.squeeze_code(out.code)
    return _page(request, "coupon.html", me, {"active_tab": "wallet", "coupon": out, "squeezed": squeezed})


@router.get("/wallet/{code}/qr.svg")
def coupon_qr(request: Request, code: str, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        raise NotFound("No such coupon")
    coupon = _db(request).read(lambda s: _own_coupon(s, me, code))
    return _svg(images.qr_svg(coupon.code))


@router.get("/wallet/{code}/barcode.svg")
def coupon_barcode(request: Request, code: str, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        raise NotFound("No such coupon")
    coupon = _db(request).read(lambda s: _own_coupon(s, me, code))
    return _svg(images.barcode_svg(coupon.code, rewards.display_code(coupon.code)))


# --- Profile, data, deletion ---------------------------------------------------------------------------------


def _profile_context(session: Session, me: Me) -> dict[str, Any]:
    return {
        "member": members.present(session, members.get(session, me.id)),
        "deletion": portal.pending_deletion(session, me.id),
    }


@router.get("/profile")
def profile(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()
    data = _db(request).read(lambda s: _profile_context(s, me))
    return _page(request, "profile.html", me, {"active_tab": "profile", "error": None, "values": None, **data})


def _patch_from(form: FormData) -> MemberPatch:
    birth = optional(form, "birth_date")
    return MemberPatch(
        first_name=text(form, "first_name"),
        last_name=text(form, "last_name"),
        phone=optional(form, "phone"),
        birth_date=date.fromisoformat(birth) if birth else None,
        language=text(form, "language") or "en",
        consents=ConsentsPatch(
            marketing_email=checked(form, "marketing_email"),
            marketing_sms=checked(form, "marketing_sms"),
            marketing_push=checked(form, "marketing_push"),
        ),
    )


@router.post("/profile")
def save_profile(
    request: Request, form: FormData = Depends(security.checked_form), me: Me | None = Depends(current_member)
) -> Response:
    if me is None:
        return to_sign_in()
    _ = i18n.gettext(request)
    try:
        patch = _patch_from(form)
        _db(request).write(lambda s: portal.update_profile(s, me.id, patch))
    except (PatronError, ValidationError, ValueError) as exc:
        error = _describe_input(exc, _)
        data = _db(request).read(lambda s: _profile_context(s, me))
        values = {k: text(form, k) for k in ("first_name", "last_name", "phone", "birth_date", "language")}
        return _page(
            request,
            "profile.html",
            me,
            {"active_tab": "profile", "error": error, "values": values, **data},
            status_code=error.status,
        )
    if patch.language and patch.language != me.language:
        # The member chose a language: it wins over an earlier click on the switch.
        security.set_cookie(request, i18n.COOKIE, patch.language, max_age=365 * 24 * 3600)
        request.state.lang = patch.language
    security.flash(request, i18n.gettext_for(patch.language or me.language)("Your profile is saved."))
    return redirect("/portal/profile")


def _describe_input(exc: Exception, _: Any) -> errors.Described:
    if isinstance(exc, ValueError) and not isinstance(exc, ValidationError):
        exc = ValidationFailed("birth_date must be a date (YYYY-MM-DD)", field="birth_date")
    return errors.describe(as_refusal(exc), _)


@router.get("/data.json")
def download(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()
    data = _db(request).read(lambda s: portal.export(s, me.id))
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="patron-data-{me.number}.json"'},
    )


@router.get("/delete")
def delete_page(request: Request, me: Me | None = Depends(current_member)) -> Response:
    if me is None:
        return to_sign_in()
    deletion = _db(request).read(lambda s: portal.pending_deletion(s, me.id))
    return _page(request, "delete.html", me, {"active_tab": "profile", "deletion": deletion, "error": None})


@router.post("/delete")
def request_deletion(
    request: Request, form: FormData = Depends(security.checked_form), me: Me | None = Depends(current_member)
) -> Response:
    if me is None:
        return to_sign_in()
    _ = i18n.gettext(request)
    if not checked(form, "confirm"):
        deletion = _db(request).read(lambda s: portal.pending_deletion(s, me.id))
        error = _("Tick the box to confirm that you want your account deleted.")
        return _page(request, "delete.html", me, {"active_tab": "profile", "deletion": deletion, "error": error}, 422)
    _db(request).write(lambda s: portal.request_deletion(s, me.id))
    security.flash(request, _("We have your request to delete the account."))
    return redirect("/portal/delete")
