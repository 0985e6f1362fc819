"""The till in headless Chromium: a cashier swipes a card (keyboard-wedge track data), sells with a
coupon and points, enrols a customer and prints the card; refusals are readable and change
nothing; screenshots in en/ru/zh."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from patron.access.principal import SYSTEM
from patron.cards import service as cards
from patron.cards.models import Card
from patron.ledger import service as ledger
from patron.ledger.schemas import AdjustmentIn
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import ConsentsIn, MemberCreate
from patron.rewards import service as rewards
from patron.rewards.models import Coupon
from patron.rewards.schemas import ClaimIn, RewardIn
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.tiers import service as tiers
from patron.transactions.models import Transaction
from patron.web import i18n
from tests.helpers import dump
from tests.web.conftest import STAFF_PASSWORD, expect_status


@pytest.fixture(scope="module")
def till(web_server: Any) -> Any:
    """A server of its own (its own database), with one earning rule: a point per 100 spent."""
    site = web_server({"PATRON_MAIL_FROM": "till@northwind.example"})
    site.db.write(
        lambda s: rules.create(s, SYSTEM, RuleIn(name="A point per 100", kind="spend", points=1, per_amount="100"))
    )
    return site


def money(amount: str, lang: str = "en") -> str:
    return i18n.money(Decimal(amount), "RUB", lang)


def customer(till: Any, points: int = 0, *, coupon_cost: int | None = None) -> dict[str, Any]:
    """A member with a loyalty card, `points` to spend and, if asked, a 10%-off coupon claimed."""
    tag = uuid.uuid4().hex[:8]
    phone = f"+7916{int(tag, 16) % 10_000_000:07d}"
    data = MemberCreate(
        first_name="Ivan",
        last_name=f"Sidorov-{tag}",
        phone=phone,
        email=f"ivan.{tag}@example.com",
        consents=ConsentsIn(program_rules=True),
    )

    def run(s: Any) -> dict[str, Any]:
        member = members.enrol(s, SYSTEM, data)
        card = cards.add_loyalty_card(s, SYSTEM, member.id, None)
        if points:
            ledger.adjust(s, SYSTEM, member.id, AdjustmentIn(external_id=f"seed-{tag}", points=points, reason="test"))
        coupon = None
        if coupon_cost is not None:
            reward = rewards.create(
                s,
                SYSTEM,
                RewardIn(
                    name=f"10% off {tag}",
                    kind="percent_discount",
                    value=Decimal("10"),
                    cost_points=coupon_cost,
                    valid_days=30,
                ),
            )
            coupon = rewards.claim(s, SYSTEM, member.id, reward.id, ClaimIn(external_id=f"claim-{tag}")).code
        return {
            "id": member.id,
            "number": member.number,
            "card": card.number,
            "phone": phone,
            "coupon": coupon,
            "tag": tag,
        }

    return till.db.write(run)


def cashier(page: Any, till: Any, lang: str = "en") -> None:
    page.goto(till.url(f"/admin/sign-in?next=/pos&lang={lang}"))
    page.fill("input[name=email]", till.staff["cashier"])
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("form[action='/admin/sign-in'] button[type=submit]")
    page.wait_for_url(re.compile(r"/pos$"))


def scan(page: Any, text: str) -> None:
    """Type into the till's field as a reader does (fast keystrokes, then Enter)."""
    field = page.locator("input[name=q]")
    field.press_sequentially(text, delay=2)
    field.press("Enter")


def base_tier_name(till: Any) -> str:
    return str(till.db.read(lambda s: tiers.base_tier(s).name))


def ledger_state(till: Any, member_id: uuid.UUID) -> tuple[Any, ...]:
    def run(s: Any) -> tuple[Any, ...]:
        account = ledger.get_account(s, member_id)
        entries = s.scalar(select(func.count()).select_from(Transaction).where(Transaction.member_id == member_id))
        coupons = tuple(s.execute(select(Coupon.code, Coupon.status).where(Coupon.member_id == member_id)).all())
        return account.available, account.pending, entries, coupons

    return till.db.read(run)


def test_cashier_swipes_and_sells_with_a_coupon_and_points(page: Any, till: Any, shot: Any) -> None:
    member = customer(till, points=500, coupon_cost=100)
    cashier(page, till)
    # A keyboard-wedge swipe: track 1 (with the cardholder name) and track 2, then Enter.
    scan(page, f"%B{member['card']}^SIDOROV/IVAN^2812101000?;{member['card']}=2812101000?")
    page.wait_for_url(re.compile(rf"/pos/members/{member['id']}$"))
    assert page.get_by_test_id("available").inner_text() == "400"
    assert page.get_by_test_id("tier").inner_text() == base_tier_name(till)

    rows = page.locator("#lines tr")
    rows.nth(0).locator("input[name=sku]").fill("OIL-5W30")
    rows.nth(0).locator("input[name=qty]").fill("2")
    rows.nth(0).locator("input[name=price]").fill("1500.00")
    page.click("[data-add-line=lines]")
    assert rows.count() == 2
    rows.nth(1).locator("input[name=sku]").fill("FILTER-01")
    rows.nth(1).locator("input[name=price]").fill("500.00")
    page.check(f"input[name=coupon][value='{member['coupon']}']")
    page.fill("input[name=redeem_points]", "150")
    page.click("form[action$='/purchase'] button[type=submit]")
    page.wait_for_url(re.compile(r"/pos/receipts/[0-9a-f-]{36}$"))

    # 3500.00, 10% coupon −350.00, 150 points −150.00: 3000.00 to pay, 30 points earned.
    assert page.get_by_test_id("total").inner_text() == money("3500.00")
    assert page.get_by_test_id("coupon-discount").inner_text() == "−" + money("350.00")
    assert page.get_by_test_id("points-value").inner_text() == "−" + money("150.00")
    assert page.get_by_test_id("amount-due").inner_text() == money("3000.00")
    assert page.get_by_test_id("points-earned").inner_text() == "+30"
    assert page.get_by_test_id("balance").inner_text() == "280"
    assert page.get_by_test_id("tier").inner_text() == base_tier_name(till)
    assert "A point per 100" in page.get_by_test_id("receipt").inner_text()
    shot(page, "pos-receipt-en")

    txn_id = uuid.UUID(page.url.rsplit("/", 1)[1])

    def stored(s: Any) -> tuple[Any, ...]:
        t = s.get(Transaction, txn_id)
        coupon = s.scalars(select(Coupon).where(Coupon.member_id == member["id"])).one()
        return (
            t.member_id,
            t.total_minor,
            t.discount_minor,
            t.points_redeemed,
            t.amount_due_minor,
            t.points_earned,
            t.channel,
            coupon.status,
            coupon.transaction_id,
        )

    assert till.db.read(stored) == (member["id"], 350000, 35000, 150, 300000, 30, "pos", "used", txn_id)
    assert ledger_state(till, member["id"])[:2] == (280, 0)


def test_double_submitted_purchase_is_one_purchase(page: Any, till: Any) -> None:
    member = customer(till, points=100)
    cashier(page, till)
    page.goto(till.url(f"/pos/members/{member['id']}"))
    form = page.locator("form[action$='/purchase']")
    fields = {
        "csrf_token": form.locator("input[name=csrf_token]").get_attribute("value"),
        "external_id": form.locator("input[name=external_id]").get_attribute("value"),
        "total": "1000.00",
        "redeem_points": "40",
    }
    action = till.url(form.get_attribute("action"))
    first = page.request.post(action, form=fields, max_redirects=0)
    second = page.request.post(action, form=fields, max_redirects=0)
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    assert ledger_state(till, member["id"])[:3] == (100 - 40 + 9, 0, 1)  # (1000 − 40) / 100 → 9 points


def test_refusals_are_readable_and_change_nothing(page: Any, till: Any, shot: Any) -> None:
    member = customer(till, points=300, coupon_cost=50)
    other = customer(till, points=300, coupon_cost=50)
    cashier(page, till)
    expect_status(page, 409, 422)
    before = ledger_state(till, member["id"])
    database_before = dump(till.db)

    # Another member's coupon.
    page.goto(till.url(f"/pos/members/{member['id']}"))
    page.fill("input[name=total]", "800.00")
    page.fill("input[name=coupons]", other["coupon"])
    page.click("form[action$='/purchase'] button[type=submit]")
    assert page.locator(".alert strong").first.inner_text() == "The coupon belongs to another member"
    # What the cashier typed is still there, and the same external_id guards the next try.
    assert page.input_value("input[name=total]") == "800.00"

    # More points than the member has (typed past the field's limit, as a script could).
    page.goto(till.url(f"/pos/members/{member['id']}"))
    page.evaluate("document.querySelector('input[name=redeem_points]').removeAttribute('max')")
    page.fill("input[name=total]", "800.00")
    page.fill("input[name=redeem_points]", "9999")
    page.click("form[action$='/purchase'] button[type=submit]")
    assert page.locator(".alert strong").first.inner_text() == "Not enough points available"

    # Nothing at all: no total, no lines.
    page.goto(till.url(f"/pos/members/{member['id']}"))
    page.click("form[action$='/purchase'] button[type=submit]")
    assert page.locator(".alert strong").first.inner_text() == "Please check what you entered"

    # In Russian the refusal reads in Russian.
    page.goto(till.url(f"/pos/members/{member['id']}?lang=ru"))
    page.fill("input[name=total]", "800.00")
    page.fill("input[name=coupons]", other["coupon"])
    page.click("form[action$='/purchase'] button[type=submit]")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.locator(".alert").is_visible()
    shot(page, "pos-refusal-ru")

    assert ledger_state(till, member["id"]) == before
    assert dump(till.db) == database_before


def test_identify_by_member_qr_phone_coupon_and_a_russian_layout_swipe(page: Any, till: Any) -> None:
    member = customer(till, points=10, coupon_cost=0)
    cashier(page, till)
    expect_status(page, 404, 422)
    for typed in (
        member["number"],  # the member's own QR from the portal
        member["phone"],
        "8" + member["phone"][2:],  # a local number as people say it
        member["card"][:4] + " " + member["card"][4:8] + " " + member["card"][8:12] + " " + member["card"][12:],
        # The reader typed track 2 with the till's keyboard in the Russian layout: ; → ж, ? → ,
        f"ж{member['card']}=2812101000,",
    ):
        page.goto(till.url("/pos"))
        scan(page, typed)
        page.wait_for_url(re.compile(rf"/pos/members/{member['id']}$"))

    page.goto(till.url("/pos"))
    scan(page, member["coupon"].lower().replace("-", " "))
    page.wait_for_url(re.compile(rf"/pos/members/{member['id']}\?coupon="))
    assert page.input_value("input[name=coupons]") == member["coupon"]

    page.goto(till.url("/pos"))
    scan(page, "4000000000000002")
    assert page.locator(".alert").inner_text().startswith("Not found")
    assert "No member with this card or phone" in page.locator(".alert").inner_text()
    assert page.input_value("input[name=q]") == ""  # a swipe is never echoed back


def test_enrol_a_customer_and_print_the_card(page: Any, till: Any, shot: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    phone = f"+7917{int(tag, 16) % 10_000_000:07d}"
    cashier(page, till)
    page.click("text=Enrol a new customer")
    page.wait_for_url(re.compile(r"/pos/enrol$"))
    page.fill("input[name=first_name]", "Мария")
    page.fill("input[name=last_name]", f"Иванова-{tag}")
    page.fill("input[name=phone]", phone)
    page.fill("input[name=email]", f"Maria.{tag}@Example.com")
    page.fill("input[name=birth_date]", "1990-04-12")
    page.select_option("select[name=language]", "ru")
    page.check("input[name=marketing_sms]")
    page.check("input[name=program_rules]")
    shot(page, "pos-enrol-en")
    page.click("form[action='/pos/enrol'] button[type=submit]")
    page.wait_for_url(re.compile(r"/pos/members/[0-9a-f-]{36}/card$"))
    member_id = uuid.UUID(page.url.rsplit("/", 2)[1])
    number = page.get_by_test_id("card-number").inner_text()
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "pos-card-en")

    def stored(s: Any) -> tuple[Any, ...]:
        m = s.get(Member, member_id)
        card = s.scalars(select(Card).where(Card.member_id == member_id)).one()
        return (m.email, m.phone, str(m.birth_date), m.language, m.channel, m.marketing_sms, m.marketing_email,
                card.number, card.status)  # fmt: skip

    assert till.db.read(stored) == (
        f"maria.{tag}@example.com",
        phone,
        "1990-04-12",
        "ru",
        "pos",
        True,
        False,
        number,
        "active",
    )
    # The new card identifies her at once.
    page.goto(till.url("/pos"))
    scan(page, number)
    page.wait_for_url(re.compile(rf"/pos/members/{member_id}$"))

    # Without consent to the rules the server refuses, whatever the browser let through.
    page.goto(till.url("/pos/enrol"))
    form = page.locator("form[action='/pos/enrol']")
    before = till.db.read(lambda s: s.scalar(select(func.count()).select_from(Member)))
    answer = page.request.post(
        till.url("/pos/enrol"),
        form={
            "csrf_token": form.locator("input[name=csrf_token]").get_attribute("value"),
            "external_id": form.locator("input[name=external_id]").get_attribute("value"),
            "first_name": "No",
            "last_name": "Consent",
            "phone": "+79170000001",
        },
        max_redirects=0,
    )
    assert answer.status == 422
    assert "the member has to accept the programme rules" in answer.text()
    assert till.db.read(lambda s: s.scalar(select(func.count()).select_from(Member))) == before


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_till_screens_in_three_languages(page: Any, till: Any, shot: Any, lang: str) -> None:
    member = customer(till, points=700, coupon_cost=100)
    cashier(page, till, lang=lang)
    shot(page, f"pos-identify-{lang}")
    scan(page, member["card"])
    page.wait_for_url(re.compile(rf"/pos/members/{member['id']}"))
    heading = {"en": "Purchase", "ru": "Покупка", "zh": "消费"}[lang]
    assert page.locator("section h2").first.inner_text() == heading
    shot(page, f"pos-member-{lang}")
    page.fill("input[name=total]", "2500.00")
    page.check(f"input[name=coupon][value='{member['coupon']}']")
    page.fill("input[name=redeem_points]", "100")
    page.click("form[action$='/purchase'] button[type=submit]")
    page.wait_for_url(re.compile(r"/pos/receipts/"))
    # 2500.00 − 250.00 − 100.00 = 2150.00 → 21 points; 600 − 100 + 21 = 521.
    assert page.get_by_test_id("amount-due").inner_text() == money("2150.00", lang)
    assert page.get_by_test_id("balance").inner_text() == i18n.number(521, lang)
    shot(page, f"pos-receipt-{lang}")
    page.goto(till.url(f"/pos/members/{member['id']}/card"))
    shot(page, f"pos-card-{lang}")
    page.goto(till.url("/pos/enrol"))
    shot(page, f"pos-enrol-{lang}")
