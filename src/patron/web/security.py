"""Sessions, CSRF protection, the sign-in rate limit and the security headers of the web UI.

Cookies
    Every cookie we set is signed (HMAC-SHA256 with a key derived from PATRON_SECRET and the
    cookie's purpose), HttpOnly and SameSite=Lax, and Secure when the request came over https or
    PATRON_ENV is production. A cookie that does not verify is ignored.

Staff session (`patron_staff`)
    Holds the staff user's id, a fingerprint of their password hash, when it was issued and when it
    was last used. It ends STAFF_TTL after sign-in, after STAFF_IDLE without a request, at sign-out,
    and as soon as the user is deactivated or their password changes (the fingerprint no longer
    matches). The user is read from the database on every request, so a role change applies at
    once. Other sessions (the member portal's) use `SignedCookie` with their own name and purpose.

CSRF (`patron_csrf` + the `csrf_token` form field)
    A random token in a signed cookie; every HTML form carries it in a hidden field
    (`{{ csrf_field() }}`), and every POST is refused (403) unless the field equals the cookie, and,
    when the browser sends an Origin header, the origin is our own. The token is replaced at
    sign-in and sign-out. `checked_form` is the dependency that does all this and hands the view
    the form.

Sign-in rate limit
    At most SIGN_IN_FAILURES failed sign-ins per email and client address within SIGN_IN_WINDOW;
    then 429 until the oldest failure leaves the window. Failures are audit entries
    (`user.sign_in_failed`, keyed by a keyed hash of email and address, never the email itself),
    so the limit holds across processes and restarts and the audit log shows the attempts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patron.access import service as access
from patron.access.models import StaffUser
from patron.access.principal import Actor
from patron.access.roles import Perm, Role
from patron.audit import service as audit
from patron.audit.models import AuditEntry
from patron.db import Database
from patron.errors import Forbidden, TooManyRequests
from patron.kit import clock
from patron.web import i18n

STAFF_COOKIE = "patron_staff"
CSRF_COOKIE = "patron_csrf"
FLASH_COOKIE = "patron_flash"
CSRF_FIELD = "csrf_token"
STAFF_TTL = 12 * 3600  # seconds from sign-in
STAFF_IDLE = 2 * 3600  # seconds without a request
_TOUCH_AFTER = 60  # re-issue the cookie (new "seen") at most once a minute
SIGN_IN_FAILURES = 5
SIGN_IN_WINDOW = timedelta(minutes=15)

# Paths whose answers get the web UI's headers and cookies; the API's answers are left as they are.
WEB_PREFIXES = ("/admin", "/pos", "/portal", "/static")


# --- Signed values ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, b"patron-web:" + purpose.encode(), hashlib.sha256).digest()


def sign(secret: bytes, purpose: str, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unsign(secret: bytes, purpose: str, token: str | None) -> dict[str, Any] | None:
    """The payload if the signature is ours and for this purpose, else None."""
    if not token or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    expected = _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def secret_of(request: Request) -> bytes:
    secret: bytes = request.app.state.secret
    return secret


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.settings.env == "production"


# --- Cookies set by views, written by the middleware ----------------------------------------------


@dataclass(frozen=True)
class CookieOp:
    name: str
    value: str | None  # None deletes the cookie
    max_age: int | None = None  # None: a browser-session cookie


def set_cookie(request: Request, name: str, value: str | None, max_age: int | None = None) -> None:
    """Queue a cookie for the response of this request, whatever response the view returns."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    ops: dict[str, CookieOp] = state.setdefault("patron_cookies", {})
    ops[name] = CookieOp(name, value, max_age)


def _pending_cookies(state: dict[str, Any]) -> dict[str, CookieOp]:
    ops: dict[str, CookieOp] = state.get("patron_cookies", {})
    return ops


class SignedCookie:
    """A signed cookie with its own name and purpose: the staff session, the member session..."""

    def __init__(self, name: str, purpose: str) -> None:
        self.name = name
        self.purpose = purpose

    def read(self, request: Request) -> dict[str, Any] | None:
        return unsign(secret_of(request), self.purpose, request.cookies.get(self.name))

    def write(self, request: Request, payload: dict[str, Any], max_age: int | None = None) -> None:
        set_cookie(request, self.name, sign(secret_of(request), self.purpose, payload), max_age)

    def clear(self, request: Request) -> None:
        set_cookie(request, self.name, None)


# --- CSRF -------------------------------------------------------------------------------------------

_csrf_cookie = SignedCookie(CSRF_COOKIE, "csrf")


def csrf_token(request: Request) -> str:
    """This browser's CSRF token; a new one (and its cookie) when it has none yet."""
    fresh: str | None = getattr(request.state, "csrf_fresh", None)
    if fresh:
        return fresh
    payload = _csrf_cookie.read(request)
    token = payload.get("t") if payload else None
    if isinstance(token, str) and token:
        return token
    return rotate_csrf(request)


def rotate_csrf(request: Request) -> str:
    token = secrets.token_urlsafe(32)
    request.state.csrf_fresh = token
    _csrf_cookie.write(request, {"t": token})
    return token


class CsrfRejected(Forbidden):
    code = "csrf_failed"
    title = "The form expired or did not come from this site"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None  # a "null" origin (sandboxed or privacy-stripped) is not ours
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after the CSRF checks (see the module docstring); 403 `csrf_failed` if not."""
    form = await request.form()
    payload = _csrf_cookie.read(request)
    expected = payload.get("t") if payload else None
    given = form.get(CSRF_FIELD)
    if (
        not isinstance(expected, str)
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), expected.encode())
        or not _same_origin(request)
    ):
        raise CsrfRejected("Reload the page and send the form again.")
    return form


# --- Flash messages (one message carried over a redirect) -----------------------------------------

_flash_cookie = SignedCookie(FLASH_COOKIE, "flash")


def flash(request: Request, text: str, kind: str = "ok") -> None:
    _flash_cookie.write(request, {"k": kind, "m": text}, max_age=120)


def pop_flash(request: Request) -> tuple[str, str] | None:
    payload = _flash_cookie.read(request)
    if payload is None:
        return None
    if FLASH_COOKIE not in _pending_cookies(request.scope.get("state", {})):
        _flash_cookie.clear(request)
    return str(payload.get("k", "ok")), str(payload.get("m", ""))


# --- Staff sessions ---------------------------------------------------------------------------------

_staff_cookie = SignedCookie(STAFF_COOKIE, "staff-session")


@dataclass(frozen=True)
class Staff:
    """The signed-in staff user of this request."""

    id: uuid.UUID
    email: str
    name: str
    role: Role
    actor: Actor

    def can(self, perm: Perm) -> bool:
        return self.actor.can(perm)


class SignInRequired(Exception):
    """No valid staff session: the web error handler redirects to the sign-in page."""


def _fingerprint(secret: bytes, password_hash: str) -> str:
    return hmac.new(_key(secret, "staff-fp"), password_hash.encode(), hashlib.sha256).hexdigest()[:24]


def start_staff_session(request: Request, user: StaffUser) -> None:
    now = int(time.time())
    payload = {"uid": str(user.id), "fp": _fingerprint(secret_of(request), user.password_hash), "iat": now, "seen": now}
    _staff_cookie.write(request, payload)
    rotate_csrf(request)


def end_staff_session(request: Request) -> None:
    _staff_cookie.clear(request)
    rotate_csrf(request)


def _load_staff(db: Database, user_id: uuid.UUID) -> StaffUser | None:
    def run(s: Session) -> StaffUser | None:
        user = s.get(StaffUser, user_id)
        if user is not None:
            s.expunge(user)
        return user

    return db.read(run)


async def current_staff(request: Request) -> Staff | None:
    """The staff user of a valid session, or None; also refreshes the session's idle clock."""
    cached: Staff | None = getattr(request.state, "staff", None)
    if cached is not None:
        return cached
    payload = _staff_cookie.read(request)
    if payload is None:
        return None
    now = int(time.time())
    try:
        user_id = uuid.UUID(str(payload["uid"]))
        issued, seen = int(payload["iat"]), int(payload["seen"])
    except (KeyError, ValueError, TypeError):
        return None
    if now - issued > STAFF_TTL or now - seen > STAFF_IDLE:
        _staff_cookie.clear(request)
        return None
    user = await run_in_threadpool(_load_staff, db_of(request), user_id)
    secret = secret_of(request)
    if (
        user is None
        or not user.active
        or not hmac.compare_digest(str(payload.get("fp", "")), _fingerprint(secret, user.password_hash))
    ):
        _staff_cookie.clear(request)
        return None
    if now - seen > _TOUCH_AFTER:
        _staff_cookie.write(request, {**payload, "seen": now})
    staff = Staff(id=user.id, email=user.email, name=user.name, role=Role(user.role), actor=access.actor_for_user(user))
    request.state.staff = staff
    return staff


def staff_required(perm: Perm | None = None) -> Any:
    """Dependency: the signed-in staff user, who must hold `perm` (403 page otherwise)."""

    async def dependency(request: Request) -> Staff:
        staff = await current_staff(request)
        if staff is None:
            raise SignInRequired
        if perm is not None and not staff.can(perm):
            raise Forbidden(f"The {staff.role} role may not open this page")
        return staff

    dependency.__name__ = f"staff_{perm.value if perm else 'any'}"
    return Depends(dependency)


# --- Sign-in rate limit -------------------------------------------------------------------------------

_SIGN_IN_FAILED = "user.sign_in_failed"
_NOBODY = Actor(kind="system", id=None, name="sign-in")


def attempt_key(secret: bytes, email: str, client: str) -> str:
    raw = f"{email.strip().lower()}|{client}".encode()
    return hmac.new(_key(secret, "sign-in"), raw, hashlib.sha256).hexdigest()[:40]


def check_sign_in_allowed(session: Session, key: str) -> None:
    since = clock.now() - SIGN_IN_WINDOW
    failures = session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.entity_type == "sign_in",
            AuditEntry.entity_id == key,
            AuditEntry.action == _SIGN_IN_FAILED,
            AuditEntry.at >= since,
        )
    )
    if int(failures or 0) >= SIGN_IN_FAILURES:
        minutes = int(SIGN_IN_WINDOW.total_seconds() // 60)
        raise TooManyRequests(f"Too many failed sign-ins; try again in {minutes} minutes")


def record_sign_in_failure(session: Session, key: str) -> None:
    audit.record(session, _NOBODY, _SIGN_IN_FAILED, "sign_in", key)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- Headers and queued cookies on every web answer -----------------------------------------------------

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _cookie_header(op: CookieOp, secure: bool) -> bytes:
    response = Response()
    if op.value is None:
        response.delete_cookie(op.name, path="/", secure=secure, httponly=True, samesite="lax")
    else:
        response.set_cookie(
            op.name, op.value, max_age=op.max_age, path="/", secure=secure, httponly=True, samesite="lax"
        )
    return response.headers["set-cookie"].encode("latin-1")


class WebMiddleware:
    """Adds the queued cookies and the security headers to the answers of the web UI's paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(WEB_PREFIXES):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        static = path.startswith("/static")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    extra += [
                        (b"content-security-policy", CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                        (b"cache-control", b"no-store"),
                    ]
                headers += [(k, v) for k, v in extra if k not in names]
                secure = scope.get("scheme") == "https" or state.get("patron_secure", False)
                for op in _pending_cookies(state).values():
                    headers.append((b"set-cookie", _cookie_header(op, secure)))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def web_context(request: Request) -> None:
    """Router dependency of every web page: the language, and the switch's cookie when asked."""
    request.state.lang = i18n.choose(request)
    request.state.patron_secure = is_secure(request)
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES and request.cookies.get(i18n.COOKIE) != asked:
        set_cookie(request, i18n.COOKIE, asked, max_age=365 * 24 * 3600)
