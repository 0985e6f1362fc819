"""Staff sign-in and sign-out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access import service as access
from patron.access.models import StaffUser
from patron.audit import service as audit
from patron.errors import TooManyRequests
from patron.web import i18n, security
from patron.web.admin.common import db, safe_next, text
from patron.web.templating import redirect, render

router = APIRouter(prefix="/admin")


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    if await security.current_staff(request) is not None:
        return redirect(safe_next(next))
    return await _form(request, next, None, "", 200)


async def _form(request: Request, next: str | None, error: str | None, email: str, status: int) -> Response:
    from starlette.concurrency import run_in_threadpool

    context = {"next": safe_next(next), "error": error, "email": email}
    return await run_in_threadpool(render, request, "admin/sign_in.html", context, status_code=status)


@router.post("/sign-in")
async def sign_in(request: Request, form: FormData = Depends(security.checked_form)) -> Response:
    from starlette.concurrency import run_in_threadpool

    _ = i18n.gettext(request)
    email, password = text(form, "email"), form.get("password")
    target = safe_next(text(form, "next"))
    if not email or not isinstance(password, str) or not password:
        return await _form(request, target, _("Enter your email and password."), email, 422)
    key = security.attempt_key(security.secret_of(request), email, security.client_address(request))

    def run(s: Session) -> StaffUser | None:
        security.check_sign_in_allowed(s, key)
        user = access.verify_user(s, email, password)
        if user is None:
            security.record_sign_in_failure(s, key)
            return None
        audit.record(s, access.actor_for_user(user), "user.sign_in", "staff_user", user.id)
        return user

    try:
        user = await run_in_threadpool(db(request).write, run)
    except TooManyRequests:
        message = _("Too many failed sign-ins. Try again in 15 minutes.")
        return await _form(request, target, message, email, 429)
    if user is None:
        return await _form(request, target, _("The email or the password is wrong."), email, 401)
    security.start_staff_session(request, user)
    return redirect(target)


@router.post("/sign-out")
async def sign_out(request: Request, form: FormData = Depends(security.checked_form)) -> Response:
    security.end_staff_session(request)
    _ = i18n.gettext(request)
    security.flash(request, _("You have signed out."))
    return redirect("/admin/sign-in")
