"""Jinja2 for every screen: autoescaped templates, the catalogues, formatting filters, the menu.

A view ends with `return render(request, "admin/page.html", {...})` (or `redirect(...)`). Templates
get, besides what the view passes:

* `_()`, `gettext()`, `ngettext()` in the request's language (`{{ _("Members") }}`,
  `{% trans %}...{% endtrans %}`), new-style: `_("%(n)s points", n=5)` formats and escapes;
* `csrf_field()`, the hidden input every POST form must carry;
* `lang`, `languages` (code → native name), `lang_url(code)` for the language switch;
* `staff` (the signed-in user or None), `menu` (the items the user's role may open), `active`;
* `program` (name, currency, timezone) and the filters `money`, `num`, `dt`, `date`;
* `flash` (kind, text) carried over a redirect by `security.flash()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from patron.access.roles import Perm
from patron.program import service as program_service
from patron.web import i18n, security

_lang: ContextVar[str] = ContextVar("patron_web_lang", default=i18n.DEFAULT)


def _gettext(message: str) -> str:
    return i18n.gettext_for(_lang.get())(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.ngettext_for(_lang.get())(singular, plural, n)


env = Environment(
    loader=PackageLoader("patron.web", "templates"),
    autoescape=select_autoescape(["html", "xml", "svg"], default_for_string=True, default=True),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Render (or translate with `_gettext`) in `lang` inside the block: mail and PDF use it too."""
    token = _lang.set(lang)
    try:
        yield
    finally:
        _lang.reset(token)


# --- The menu -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MenuItem:
    key: str  # matches the `active` a page passes, to highlight it
    label: str  # an English msgid, marked with i18n.N_
    url: str
    perm: Perm | None  # None: any signed-in staff user
    order: int = 100


MENU: list[MenuItem] = []


def add_menu_item(item: MenuItem) -> None:
    """Add an entry to the staff menu (each area registers its own when its module is imported)."""
    if all(existing.key != item.key for existing in MENU):
        MENU.append(item)
        MENU.sort(key=lambda m: (m.order, m.key))


def menu_for(staff: security.Staff | None) -> list[MenuItem]:
    if staff is None:
        return []
    return [m for m in MENU if m.perm is None or staff.can(m.perm)]


# --- Filters -------------------------------------------------------------------------------------------


@pass_context
def _money(ctx: Context, amount: Decimal | int | None, currency: str | None = None) -> str:
    if amount is None:
        return ""
    cur = currency or ctx["program"]["currency"]
    return i18n.money(Decimal(amount), cur, ctx["lang"])


@pass_context
def _num(ctx: Context, value: int | Decimal | None) -> str:
    return "" if value is None else i18n.number(value, ctx["lang"])


@pass_context
def _dt(ctx: Context, value: datetime | None, fmt: str = "medium") -> str:
    tz = ZoneInfo(ctx["program"]["timezone"])
    return i18n.when(value, ctx["lang"], tz, "short" if fmt == "short" else "medium")


@pass_context
def _date(ctx: Context, value: date | datetime | None, fmt: str = "medium") -> str:
    if isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(ctx["program"]["timezone"]))
    return i18n.day(value, ctx["lang"], fmt)


@pass_context
def _csrf_field(ctx: Context) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(security.CSRF_FIELD, ctx["csrf_token"])


env.filters.update(money=_money, num=_num, dt=_dt, date=_date, tz=ZoneInfo)
env.globals["csrf_field"] = _csrf_field
env.globals["languages"] = i18n.NATIVE_NAMES
env.globals["Perm"] = Perm


def _program(request: Request) -> dict[str, str]:
    def run(s: Session) -> dict[str, str]:
        p = program_service.get(s)
        return {"name": p.name, "currency": p.currency, "timezone": p.timezone}

    program: dict[str, str] = security.db_of(request).read(run)
    return program


def _lang_url(request: Request) -> Callable[[str], str]:
    def url(code: str) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        params.append(("lang", code))
        return f"{request.url.path}?{urlencode(params)}"

    return url


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """The template as an HTML answer, in the request's language, with the shared context."""
    lang = i18n.request_language(request)
    staff: security.Staff | None = getattr(request.state, "staff", None)
    ctx: dict[str, Any] = {
        "request": request,
        "lang": lang,
        "staff": staff,
        "menu": menu_for(staff),
        "csrf_token": security.csrf_token(request),
        "lang_url": _lang_url(request),
        "flash": security.pop_flash(request),
    }
    ctx.update(context or {})
    if "program" not in ctx:
        ctx["program"] = _program(request)
    with language(lang):
        html = env.get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status_code)


def redirect(url: str, status_code: int = 303) -> Response:
    """After a POST: 303 See Other, so a reload does not send the form again."""
    return RedirectResponse(url, status_code=status_code)
