"""Every back-office page in the three languages: no console errors, translated, screenshots saved."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from patron.access.principal import SYSTEM
from patron.jobs import registry as jobs
from patron.ledger import service as ledger
from patron.ledger.schemas import AdjustmentIn
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.transactions import service as transactions
from patron.transactions.schemas import ItemIn, TransactionIn
from tests.conftest import TEST_SECRET
from tests.web.conftest import WebServer
from tests.web.test_admin_journeys import enrol

# The heading of the members page and the menu's word for it, per language.
MEMBERS = {"en": "Members", "ru": "Участники", "zh": "会员"}


@pytest.fixture(scope="module")
def sample(web: WebServer) -> dict[str, Any]:
    """A little history, so the dashboard and the member page have something to show."""
    web.db.write(
        lambda s: rules.create(
            s, SYSTEM, RuleIn(name="A point per 100", kind="spend", points=1, per_amount=Decimal(100))
        )
    )
    people = [enrol(web, f"Pages{i}{uuid.uuid4().hex[:4]}") for i in range(4)]
    for i, person in enumerate(people):
        for visit in range(i + 1):
            body = TransactionIn(
                external_id=f"pages-{person['id']}-{visit}",
                member_id=person["id"],
                items=[
                    ItemIn(sku="OIL-5W30", name="Oil change", category="service", unit_price=Decimal(2500 + 500 * i))
                ],
            )
            web.db.write(lambda s, body=body: transactions.post(s, SYSTEM, body, TEST_SECRET.encode()))
    web.db.write(
        lambda s: ledger.adjust(
            s,
            SYSTEM,
            people[0]["id"],
            AdjustmentIn(external_id=f"pg-{uuid.uuid4().hex}", points=40, reason="Welcome back"),
        )
    )
    jobs.run(web.db, "refresh-segments", datetime.now(UTC))
    return people[0]


PAGES = [
    ("dashboard", "/admin"),
    ("members", "/admin/members"),
    ("member", "/admin/members/{member}"),
    ("rules", "/admin/rules"),
    ("rule-new", "/admin/rules/new"),
    ("tiers", "/admin/tiers"),
    ("segments", "/admin/segments"),
    ("segment", "/admin/segments/vip"),
    ("audit", "/admin/audit"),
    ("keys", "/admin/keys"),
]


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_main_pages_in_each_language(
    web: WebServer, page: Any, sign_in: Any, shot: Any, sample: Any, lang: str
) -> None:
    sign_in(page, "admin", lang=lang)
    for name, path in PAGES:
        response = page.goto(web.url(path.format(member=sample["id"])))
        assert response is not None and response.status == 200, (name, response and response.status)
        assert page.locator("html").get_attribute("lang") == lang
        assert MEMBERS[lang] in page.locator("nav.nav").inner_text()
        shot(page, f"admin-{name}-{lang}")
    page.goto(web.url(f"/admin/members/{sample['id']}"))
    assert page.locator("#balance-available").inner_text() != "0"


def test_dashboard_figures_on_the_page(web: WebServer, page: Any, sign_in: Any, sample: Any) -> None:
    sign_in(page, "analyst")
    page.goto(web.url("/admin"))
    figure = page.locator("[data-figure=members] .value").inner_text()
    assert int(figure.replace(",", "")) >= 4
    assert page.locator(".chart svg").count() == 4
    # The analyst reads but may not configure.
    assert page.locator("a[href='/admin/rules/new']").count() == 0


def test_language_switch_is_remembered(web: WebServer, page: Any, sign_in: Any) -> None:
    sign_in(page, "admin")
    page.click("nav.langs a[hreflang=ru]")
    assert page.locator("h1").inner_text() == "Панель"
    page.goto(web.url("/admin/members"))
    assert page.locator("h1").inner_text() == "Участники"
    page.click("nav.langs a[hreflang=zh]")
    assert page.locator("h1").inner_text() == "会员"


def test_browser_language_is_negotiated(web: WebServer, browser: Any) -> None:
    context = browser.new_context(locale="ru-RU", extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    try:
        pg = context.new_page()
        pg.goto(web.url("/admin/sign-in"))
        assert pg.locator("h1").inner_text() == "Вход для сотрудников"
    finally:
        context.close()
