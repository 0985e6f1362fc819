"""The catalogues are complete, and the language of a request is chosen as documented."""

from __future__ import annotations

from decimal import Decimal

import pytest
from starlette.requests import Request

from patron.web import catalogs, i18n


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_catalogue_has_every_string_translated(lang: str) -> None:
    assert catalogs.problems(lang, catalogs.extract()) == []


def test_accept_language_order() -> None:
    assert i18n.accept_language("ru-RU,ru;q=0.9,en;q=0.8") == ["ru-RU", "ru", "en"]
    assert i18n.accept_language("en;q=0.2, zh-CN;q=0.9, *;q=0.1, fr;q=0") == ["zh-CN", "en"]
    assert i18n.accept_language(None) == []


def _request(query: str = "", cookie: str = "", accept: str = "") -> Request:
    headers = []
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if accept:
        headers.append((b"accept-language", accept.encode()))
    return Request({"type": "http", "query_string": query.encode(), "headers": headers, "path": "/admin"})


def test_choice_order() -> None:
    assert i18n.choose(_request(accept="zh-CN,zh;q=0.9")) == "zh"
    assert i18n.choose(_request(accept="de-DE,ru;q=0.5")) == "ru"
    assert i18n.choose(_request(accept="de-DE")) == "en"
    assert i18n.choose(_request(accept="zh-CN"), member_language="ru") == "ru"
    assert i18n.choose(_request(cookie="patron_lang=zh", accept="ru"), member_language="ru") == "zh"
    assert i18n.choose(_request(query="lang=ru", cookie="patron_lang=zh")) == "ru"
    assert i18n.choose(_request(query="lang=xx", cookie="patron_lang=yy")) == "en"


def test_translations_and_formats() -> None:
    assert i18n.gettext_for("ru")("Members") == "Участники"
    assert i18n.gettext_for("zh")("Members") == "会员"
    assert i18n.gettext_for("en")("Members") == "Members"
    assert i18n.money(Decimal("1250.50"), "RUB", "ru") == "1\xa0250,50\xa0₽"
    assert i18n.number(1234567, "en") == "1,234,567"
