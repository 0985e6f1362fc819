"""The member's session in the portal: a cookie of its own, never the staff one.

`patron_member` is a signed cookie holding a random token; the token's hash is a `portal_sessions`
row, so a session ends for real at sign-out (or when it runs out, or the member is erased).
`patron_portal_code` remembers, during sign-in, which sign-in the code form belongs to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from patron.portal import service as portal
from patron.web import i18n, security
from patron.web.templating import redirect

MEMBER_COOKIE = "patron_member"
SIGN_IN_COOKIE = "patron_portal_code"

member_cookie = security.SignedCookie(MEMBER_COOKIE, "member-session")
sign_in_cookie = security.SignedCookie(SIGN_IN_COOKIE, "portal-sign-in")


@dataclass(frozen=True)
class Me:
    """The signed-in member of this request; every portal query is scoped by `id`."""

    id: uuid.UUID
    number: str
    first_name: str | None
    language: str
    status: str


def token_of(request: Request) -> str | None:
    payload = member_cookie.read(request)
    token = payload.get("t") if payload else None
    return token if isinstance(token, str) and token else None


async def current_member(request: Request) -> Me | None:
    """Dependency: the member of a valid portal session, or None (the view sends them to sign in).

    It also settles the page's language: the member's own, unless the switch or the URL chose."""
    token = token_of(request)
    if token is None:
        return None

    def load(s: Session) -> Me | None:
        member = portal.session_member(s, token)
        if member is None:
            return None
        return Me(member.id, member.number, member.first_name, member.language, member.status)

    me = await run_in_threadpool(security.db_of(request).read, load)
    if me is None:
        member_cookie.clear(request)
        return None
    request.state.lang = i18n.choose(request, me.language)
    request.state.member = me
    return me


def start(request: Request, token: str) -> None:
    member_cookie.write(request, {"t": token}, max_age=int(portal.SESSION_TTL.total_seconds()))
    sign_in_cookie.clear(request)
    security.rotate_csrf(request)


def end(request: Request) -> None:
    member_cookie.clear(request)
    security.rotate_csrf(request)


def pending_sign_in(request: Request) -> uuid.UUID | None:
    payload = sign_in_cookie.read(request)
    try:
        return uuid.UUID(str(payload["id"])) if payload else None
    except (KeyError, ValueError):
        return None


def remember_sign_in(request: Request, sign_in_id: uuid.UUID) -> None:
    sign_in_cookie.write(request, {"id": str(sign_in_id)}, max_age=int(portal.CODE_TTL.total_seconds()) + 300)


def to_sign_in() -> Response:
    return redirect("/portal/sign-in")
