"""Languages of the web UI: English, Russian and Chinese from Babel gettext catalogues.

The catalogues are the `.po` files in src/patron/locale/{en,ru,zh}/LC_MESSAGES/messages.po; they are
compiled in memory the first time a process needs one (no `.mo` files to build or commit). Fuzzy
entries are left out, so a half-done translation shows the English text rather than a wrong one.

The language of a request is, in order: `?lang=` (and the switch remembers it in a cookie), the
`patron_lang` cookie, the member's own language (the portal passes it), the browser's
Accept-Language (Babel's negotiation), English.

Dates, numbers and money are formatted by Babel in the same locale; times in the programme's
time zone.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path

from babel.core import negotiate_locale
from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations
from starlette.requests import Request

LANGUAGES: tuple[str, ...] = ("en", "ru", "zh")
DEFAULT = "en"
COOKIE = "patron_lang"
# What the language switch shows: each language in its own words.
NATIVE_NAMES = {"en": "English", "ru": "Русский", "zh": "中文"}
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

_cache: dict[str, NullTranslations] = {}
_lock = threading.Lock()


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now (module-level labels)."""
    return message


def translations(lang: str) -> NullTranslations:
    """The compiled catalogue of one language (cached per process)."""
    lang = lang if lang in LANGUAGES else DEFAULT
    hit = _cache.get(lang)
    if hit is not None:
        return hit
    with _lock:
        if lang not in _cache:
            path = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
            if path.exists():
                with path.open("rb") as f:
                    catalog = read_po(f, locale=lang)
                buf = io.BytesIO()
                write_mo(buf, catalog, use_fuzzy=False)
                buf.seek(0)
                _cache[lang] = Translations(fp=buf)
            else:
                _cache[lang] = NullTranslations()
    return _cache[lang]


def reload() -> None:
    """Forget the compiled catalogues (after editing a .po file in a running process)."""
    with _lock:
        _cache.clear()


def gettext_for(lang: str) -> Callable[[str], str]:
    return translations(lang).gettext


def ngettext_for(lang: str) -> Callable[[str, str, int], str]:
    return translations(lang).ngettext


def accept_language(header: str | None) -> list[str]:
    """The browser's languages, most wanted first: 'ru-RU,ru;q=0.9,en;q=0.8' → ['ru-RU', 'ru', 'en']."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            weighted.append((-q, i, tag))
    return [tag for _, _, tag in sorted(weighted)]


def choose(request: Request, member_language: str | None = None) -> str:
    """The request's language (see the module docstring for the order)."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    if member_language in LANGUAGES:
        return member_language
    found = negotiate_locale(accept_language(request.headers.get("accept-language")), list(LANGUAGES), sep="-")
    return found if found in LANGUAGES else DEFAULT


def request_language(request: Request) -> str:
    """The language chosen for this request (set by the page dependencies), else negotiated now."""
    lang: str | None = getattr(request.state, "lang", None)
    return lang if lang in LANGUAGES else choose(request)


def gettext(request: Request) -> Callable[[str], str]:
    """`_ = i18n.gettext(request)` in a view, then `_("Text")`: extracted like any other msgid."""
    return gettext_for(request_language(request))


# --- Formatting -------------------------------------------------------------------------------------


def money(amount: Decimal, currency: str, lang: str) -> str:
    return format_currency(amount, currency, locale=lang)


def number(value: int | Decimal, lang: str) -> str:
    return format_decimal(value, locale=lang)


def when(value: datetime | None, lang: str, tz: tzinfo | None = None, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return _format_datetime(value, format=fmt, tzinfo=tz, locale=lang)


def day(value: date | datetime | None, lang: str, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return _format_date(value, format=fmt, locale=lang)
