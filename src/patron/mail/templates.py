"""Emails from templates in the recipient's language.

Each kind of message is three templates under web/templates/mail/: `KIND.subject.txt`,
`KIND.txt` (the plain-text body) and `KIND.html`; they are rendered with the web UI's Jinja
environment and gettext catalogues, in the language given. The text templates switch
autoescaping off themselves: plain text must not carry HTML entities.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateNotFound

from patron.web import i18n


def render(kind: str, language: str, context: dict[str, Any]) -> tuple[str, str, str | None]:
    """(subject, text, html) of a message of `kind` in `language` (English when not one of ours)."""
    from patron.web.templating import env
    from patron.web.templating import language as in_language

    lang = language if language in i18n.LANGUAGES else i18n.DEFAULT
    values = {**context, "lang": lang}
    with in_language(lang):
        subject = " ".join(env.get_template(f"mail/{kind}.subject.txt").render(values).split())
        text = env.get_template(f"mail/{kind}.txt").render(values).strip() + "\n"
        try:
            html: str | None = env.get_template(f"mail/{kind}.html").render(values)
        except TemplateNotFound:
            html = None
    return subject, text, html
