"""Logging that never carries personal data or card numbers.

The access log is ours, not uvicorn's: uvicorn would print query strings, and a query string
can hold a phone, an email or a card swipe. Paths keep their shape; query values are dropped and
long digit runs (card numbers in paths) are masked to their last four digits.
"""

from __future__ import annotations

import logging
import re
import sys

from patron.kit import context

_DIGITS = re.compile(r"\d{8,}")
_EMAILISH = re.compile(r"[^/\s@]+@[^/\s@]+")


def scrub(text: str) -> str:
    text = _DIGITS.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)
    return _EMAILISH.sub("<email>", text)


def redact_query(query: str) -> str:
    if not query:
        return ""
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    return "?" + "&".join(f"{scrub(n)}=…" for n in names)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.request_id.get() or "-"
        return True


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_patron", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._patron = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's access log prints raw query strings; ours (patron.access) replaces it.
    logging.getLogger("uvicorn.access").disabled = True
