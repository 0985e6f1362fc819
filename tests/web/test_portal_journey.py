"""The member portal in headless Chromium: sign in with the code emailed over real SMTP, claim a
reward, see the coupon; a member never sees another member's data; screenshots in en/ru/zh."""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from patron.access.principal import SYSTEM
from patron.cards import service as cards
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry
from patron.ledger.schemas import AdjustmentIn
from patron.members import service as members
from patron.members.schemas import ConsentsIn, MemberCreate
from patron.rewards import service as rewards
from patron.rewards.models import Coupon
from patron.rewards.schemas import ClaimIn, RewardIn
from patron.transactions import service as transactions
from patron.transactions.schemas import TransactionIn
from tests.conftest import TEST_SECRET
from tests.live_server import free_port
from tests.web.conftest import expect_status

PHONE = {"width": 390, "height": 844}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def code_for(self, address: str, after: int, timeout: float = 15) -> str:
        """The sign-in code of the first message to `address` past the first `after` messages."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for msg in self.messages[after:]:
                    if msg["To"] == address:
                        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                        return re.findall(r"\b\d{6}\b", body)[0]
            time.sleep(0.05)
        raise AssertionError(f"no email to {address} arrived")

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def site(web_server: Any, smtp: tuple[Inbox, int]) -> Any:
    """A live server whose emails go to the test's SMTP server."""
    return web_server({"PATRON_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}"})


def new_member(site: Any, points: int = 0, language: str = "en") -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    data = MemberCreate(
        first_name="Anna",
        last_name=f"Petrova-{tag}",
        email=f"anna.{tag}@example.com",
        phone=f"+7916{int(tag, 16) % 10_000_000:07d}",
        language=language,  # type: ignore[arg-type]
        consents=ConsentsIn(program_rules=True, marketing_email=True),
    )

    def run(s: Any) -> dict[str, Any]:
        member = members.enrol(s, SYSTEM, data)
        if points:
            s.flush()
            ledger.adjust(s, SYSTEM, member.id, AdjustmentIn(external_id=f"seed-{tag}", points=points, reason="test"))
        return {"id": member.id, "number": member.number, "email": member.email, "tag": tag}

    return site.db.write(run)


def new_reward(site: Any, cost: int) -> dict[str, Any]:
    name = f"Free wash {uuid.uuid4().hex[:6]}"
    reward = site.db.write(
        lambda s: rewards.create(
            s,
            SYSTEM,
            RewardIn(name=name, kind="amount_discount", value=Decimal("500"), cost_points=cost, valid_days=30),
        )
    )
    return {"id": reward.id, "name": name}


def sign_in(page: Any, site: Any, inbox: Inbox, address: str, lang: str = "en") -> None:
    before = inbox.count()
    page.goto(site.url(f"/portal/sign-in?lang={lang}"))
    page.fill("input[name=address]", address)
    page.click("form[action='/portal/sign-in'] button[type=submit]")
    page.wait_for_url(re.compile(r"/portal/sign-in/code$"))
    page.fill("input[name=code]", inbox.code_for(address, before))
    page.click("form[action='/portal/sign-in/code'] button[type=submit]")
    page.wait_for_url(re.compile(r"/portal$"))


def images_loaded(page: Any) -> bool:
    return bool(page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"))


def test_member_signs_in_by_email_claims_a_reward_and_sees_the_coupon(
    page: Any, site: Any, smtp: tuple[Inbox, int], shot: Any
) -> None:
    inbox, _port = smtp
    member = new_member(site, points=1200)
    reward = new_reward(site, cost=300)
    page.set_viewport_size(PHONE)

    # A wrong code first: refused (422), with the tries left, and still on the code form.
    expect_status(page, 422)
    before = inbox.count()
    page.goto(site.url("/portal/sign-in?lang=en"))
    page.fill("input[name=address]", member["email"].upper())
    page.click("form[action='/portal/sign-in'] button[type=submit]")
    code = inbox.code_for(member["email"], before)
    page.fill("input[name=code]", f"{(int(code) + 1) % 1_000_000:06d}")
    page.click("form[action='/portal/sign-in/code'] button[type=submit]")
    assert page.locator(".alert").inner_text() == "The code is not right. Tries left: 4."
    page.fill("input[name=code]", code)
    page.click("form[action='/portal/sign-in/code'] button[type=submit]")
    page.wait_for_url(re.compile(r"/portal$"))

    assert page.get_by_test_id("balance").inner_text() == "1,200"
    assert images_loaded(page)  # the member's QR for the till

    page.click("nav.tabs >> text=Rewards")
    page.wait_for_url(re.compile(r"/portal/rewards$"))
    card = page.locator("[data-testid=reward]", has_text=reward["name"])
    card.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/portal/wallet/[0-9A-Z]{12}$"))
    assert page.locator(".flash").inner_text() == "Done! The coupon is in your wallet."
    assert page.get_by_test_id("coupon-status").inner_text() == "Ready to use"
    code_text = page.get_by_test_id("coupon-code").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code_text)
    assert images_loaded(page)  # QR and barcode of the coupon

    coupon = site.db.read(lambda s: s.scalars(select(Coupon).where(Coupon.member_id == member["id"])).one())
    assert rewards.display_code(coupon.code) == code_text
    assert (coupon.status, coupon.points_spent, coupon.reward_id) == ("issued", 300, reward["id"])
    assert site.db.read(lambda s: ledger.get_account(s, member["id"]).available) == 900

    page.click("nav.tabs >> text=Wallet")
    page.wait_for_url(re.compile(r"/portal/wallet$"))
    assert page.locator("[data-testid=coupon]").count() == 1
    assert code_text in page.locator("[data-testid=coupon]").inner_text()
    page.click("nav.tabs >> text=Home")
    page.wait_for_url(re.compile(r"/portal$"))
    assert page.get_by_test_id("balance").inner_text() == "900"

    # The download holds this member's data.
    download = page.request.get(site.url("/portal/data.json"))
    assert download.status == 200
    assert download.headers["content-disposition"] == f'attachment; filename="patron-data-{member["number"]}.json"'
    data = json.loads(download.text())
    assert data["member"]["email"] == member["email"]
    assert [c["code"] for c in data["coupons"]] == [code_text]

    # Signed out, the portal asks for a sign-in again.
    page.click("form[action='/portal/sign-out'] button")
    page.wait_for_url(re.compile(r"/portal/sign-in$"))
    page.goto(site.url("/portal/wallet"))
    assert page.url.endswith("/portal/sign-in")


def test_double_submitted_claim_is_one_claim(page: Any, site: Any, smtp: tuple[Inbox, int]) -> None:
    inbox, _port = smtp
    member = new_member(site, points=1000)
    reward = new_reward(site, cost=250)
    sign_in(page, site, inbox, member["email"])
    page.goto(site.url("/portal/rewards"))
    form = page.locator("[data-testid=reward]", has_text=reward["name"]).locator("form")
    fields = {
        "csrf_token": form.locator("input[name=csrf_token]").get_attribute("value"),
        "external_id": form.locator("input[name=external_id]").get_attribute("value"),
    }
    action = site.url(form.get_attribute("action"))
    first = page.request.post(action, form=fields, max_redirects=0)
    second = page.request.post(action, form=fields, max_redirects=0)
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    assert (
        site.db.read(
            lambda s: s.scalar(select(func.count()).select_from(Coupon).where(Coupon.member_id == member["id"]))
        )
        == 1
    )
    assert site.db.read(lambda s: ledger.get_account(s, member["id"]).available) == 750


def test_a_member_cannot_reach_another_members_data(page: Any, site: Any, smtp: tuple[Inbox, int]) -> None:
    inbox, _port = smtp
    anna, boris = new_member(site, points=500), new_member(site, points=500)
    reward = new_reward(site, cost=100)
    boris_coupon = site.db.write(
        lambda s: rewards.claim(s, SYSTEM, boris["id"], reward["id"], ClaimIn(external_id=f"c-{boris['tag']}")).code
    )
    boris_card = site.db.write(lambda s: cards.add_loyalty_card(s, SYSTEM, boris["id"], None).number)
    boris_txn = site.db.write(
        lambda s: (
            transactions.post(
                s,
                SYSTEM,
                TransactionIn(external_id=f"t-{boris['tag']}", card=boris_card, total=Decimal("1000")),
                TEST_SECRET.encode(),
            ).id
        )
    )
    boris_entries = site.db.read(
        lambda s: s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == boris["id"]))
    )
    sign_in(page, site, inbox, anna["email"])
    squeezed = rewards.squeeze_code(boris_coupon)
    for path in (
        f"/portal/wallet/{squeezed}",
        f"/portal/wallet/{squeezed}/qr.svg",
        f"/portal/wallet/{squeezed}/barcode.svg",
        f"/portal/wallet/{boris_coupon}",
        f"/portal/history/{boris_txn}",
    ):
        answer = page.request.get(site.url(path))
        assert answer.status == 404, path
        # (The language links of the 404 page repeat the path asked for; nothing else of Boris is there.)
        assert boris["email"] not in answer.text() and reward["name"] not in answer.text(), path
    # Anna's own pages show none of Boris's things.
    for path in ("/portal", "/portal/history", "/portal/wallet", "/portal/card", "/portal/data.json"):
        body = page.request.get(site.url(path)).text()
        assert boris["email"] not in body and boris["number"] not in body and squeezed not in body, path
        assert str(boris_txn) not in body and boris_card not in body, path
    # Nothing changed for Boris.
    assert (
        site.db.read(
            lambda s: s.scalar(
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == boris["id"])
            )
        )
        == boris_entries
    )
    # Without a session nothing is shown at all.
    page.context.clear_cookies()
    assert page.request.get(site.url(f"/portal/wallet/{squeezed}/qr.svg")).status == 404
    page.goto(site.url("/portal/history"))
    assert page.url.endswith("/portal/sign-in")


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_portal_pages_in_three_languages(page: Any, site: Any, smtp: tuple[Inbox, int], shot: Any, lang: str) -> None:
    inbox, _port = smtp
    member = new_member(site, points=2500, language=lang)
    reward = new_reward(site, cost=400)
    site.db.write(
        lambda s: rewards.claim(s, SYSTEM, member["id"], reward["id"], ClaimIn(external_id=f"shot-{member['tag']}"))
    )
    page.set_viewport_size(PHONE)
    page.context.clear_cookies()
    page.goto(site.url(f"/portal/sign-in?lang={lang}"))
    assert page.locator("html").get_attribute("lang") == lang
    shot(page, f"portal-sign-in-{lang}")
    sign_in(page, site, inbox, member["email"], lang=lang)
    titles = {
        "en": ("Points available", "Rewards", "Wallet", "Profile"),
        "ru": ("Доступно баллов", "Награды", "Кошелёк", "Профиль"),
        "zh": ("可用积分", "奖励", "卡包", "个人资料"),
    }[lang]
    assert titles[0] in page.locator("main").inner_text()
    shot(page, f"portal-home-{lang}")
    for path, name, heading in (
        ("/portal/rewards", "rewards", titles[1]),
        ("/portal/wallet", "wallet", titles[2]),
        ("/portal/profile", "profile", titles[3]),
        ("/portal/history", "history", None),
        ("/portal/card", "card", None),
    ):
        page.goto(site.url(path))
        if heading:
            assert page.locator("h1").inner_text() == heading
        assert images_loaded(page)
        shot(page, f"portal-{name}-{lang}")
    page.goto(site.url("/portal/wallet"))
    page.locator("[data-testid=coupon]").first.click()
    shot(page, f"portal-coupon-{lang}")


def test_without_smtp_the_code_waits_in_the_development_mailbox(
    page: Any, browser: Any, web: Any, sign_in: Any, shot: Any
) -> None:
    """The default local setup: no PATRON_SMTP_URL, the admin reads the code at /admin/mailbox."""
    member = new_member(web, points=50, language="zh")
    member_context = browser.new_context(locale="zh-CN", viewport=PHONE)
    errors: list[str] = []
    phone = member_context.new_page()
    phone.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        phone.goto(web.url("/portal/sign-in"))
        assert phone.locator("html").get_attribute("lang") == "zh"  # the browser's language
        phone.fill("input[name=address]", member["email"])
        phone.click("form[action='/portal/sign-in'] button[type=submit]")
        phone.wait_for_url(re.compile(r"/portal/sign-in/code$"))

        sign_in(page, "admin")
        page.goto(web.url("/admin/mailbox?lang=en"))
        row = page.locator("[data-testid=mailbox] tr", has_text=member["email"])
        assert row.locator(".badge").inner_text() == "In the mailbox"
        subject = row.locator("a").inner_text()
        code = subject.split(" ", 1)[0]
        assert re.fullmatch(r"\d{6}", code)
        assert "登录" in subject  # written in the member's language
        row.locator("a").click()
        assert code in page.get_by_test_id("mail-body").inner_text()
        shot(page, "admin-mailbox-message-en")

        phone.fill("input[name=code]", code)
        phone.click("form[action='/portal/sign-in/code'] button[type=submit]")
        phone.wait_for_url(re.compile(r"/portal$"))
        assert phone.get_by_test_id("balance").inner_text() == "50"
    finally:
        member_context.close()
    assert errors == []
