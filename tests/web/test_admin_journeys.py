"""The back office in a real browser: the staff journey, role checks, CSRF and the sign-in limit."""

from __future__ import annotations

import itertools
import re
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.ledger import service as ledger
from patron.members import service as members
from patron.members.schemas import MemberCreate
from patron.rules import service as rules
from patron.rules.models import EarningRule
from tests.web.conftest import STAFF_PASSWORD, WebServer, expect_status

_seq = itertools.count(1)


def enrol(web: WebServer, last_name: str) -> dict[str, Any]:
    n = next(_seq)
    phone = f"+7925{uuid.uuid4().int % 10**7:07d}"

    def run(s: Any) -> dict[str, Any]:
        member = members.enrol(
            s,
            SYSTEM,
            MemberCreate(
                first_name="Olga",
                last_name=last_name,
                phone=phone,
                email=f"olga{n}.{uuid.uuid4().hex[:6]}@example.com",
                consents={"program_rules": True},
            ),
        )
        card = cards.add_loyalty_card(s, SYSTEM, member.id, None)
        return {"id": member.id, "number": member.number, "card": card.number}

    return web.db.write(run)


def available(web: WebServer, member_id: uuid.UUID) -> int:
    return web.db.read(lambda s: ledger.summary(s, member_id).available)


def ledger_count(web: WebServer, member_id: uuid.UUID) -> int:
    return web.db.read(lambda s: len(ledger.entries(s, member_id, limit=500, cursor=None)[0]))


def test_staff_journey(web: WebServer, page: Any, sign_in: Any) -> None:
    last_name = f"Journey{uuid.uuid4().hex[:6]}"
    member = enrol(web, last_name)
    rules_before = web.db.read(lambda s: s.scalar(select(func.count()).select_from(EarningRule)))

    # Sign in and find the member by name.
    expect_status(page, 409, 422)
    sign_in(page, "admin")
    assert page.locator("h1").inner_text() == "Dashboard"
    page.click("nav.nav a[href='/admin/members']")
    page.fill("input[name=q]", last_name)
    page.click("form[role=search] button[type=submit]")
    rows = page.locator("#members tbody tr")
    assert rows.count() == 1
    page.click(f"#members a[href='/admin/members/{member['id']}']")
    assert page.locator("#balance-available").inner_text() == "0"

    # Adjust points with a reason: the page and the ledger agree.
    page.fill("#adjust-form input[name=points]", "120")
    page.fill("#adjust-form input[name=reason]", "Goodwill: the repair took two days longer")
    page.click("#adjust-form button[type=submit]")
    assert page.locator(".flash").inner_text() == "Points adjusted by +120."
    assert page.locator("#balance-available").inner_text() == "120"
    assert available(web, member["id"]) == 120
    first = page.locator("#ledger tbody tr").first.inner_text()
    assert "Goodwill: the repair took two days longer" in first and "+120" in first
    user_id = web.db.read(lambda s: str(access.verify_user(s, web.staff["admin"], STAFF_PASSWORD).id))  # type: ignore[union-attr]
    audited = web.db.read(
        lambda s: s.scalars(
            select(AuditEntry).where(AuditEntry.action == "points.adjust", AuditEntry.entity_id == str(member["id"]))
        ).all()
    )
    assert [(a.actor_kind, a.actor_id, a.details) for a in audited] == [
        ("user", user_id, {"points": 120, "reason": "Goodwill: the repair took two days longer"})
    ]

    # Taking more than there is: refused, readable, nothing changed.
    entries = ledger_count(web, member["id"])
    page.fill("#adjust-form input[name=points]", "-500")
    page.fill("#adjust-form input[name=reason]", "Mistaken claim")
    page.click("#adjust-form button[type=submit]")
    alert = page.locator("#adjust-form .alert").inner_text()
    assert "Not enough points available" in alert
    assert page.locator("#adjust-form input[name=points]").input_value() == "-500"
    assert page.locator("#balance-available").inner_text() == "120"
    assert available(web, member["id"]) == 120
    assert ledger_count(web, member["id"]) == entries

    # Create an earning rule: first without its amount (a readable refusal), then right.
    page.click("nav.nav a[href='/admin/rules']")
    page.click("a[href='/admin/rules/new']")
    rule_name = f"Points on tyres {uuid.uuid4().hex[:4]}"
    page.fill("#rule-form input[name=name]", rule_name)
    page.select_option("#rule-form select[name=kind]", "category")
    page.fill("#rule-form input[name=points]", "3")
    page.fill("#rule-form input[name=category]", "tyres")
    page.click("#rule-form button[type=submit]")
    alert = page.locator(".alert").inner_text()
    assert "Please check what you entered" in alert
    assert "Per amount: a category rule needs per_amount" in alert
    assert page.locator("#rule-form input[name=name]").input_value() == rule_name
    assert web.db.read(lambda s: s.scalar(select(func.count()).select_from(EarningRule))) == rules_before
    page.fill("#rule-form input[name=per_amount]", "500")
    page.check("#rule-form input[name=weekdays][value='6']")
    page.click("#rule-form button[type=submit]")
    assert page.url.endswith("/admin/rules")
    assert page.locator(".flash").inner_text() == f"The rule “{rule_name}” is created."
    assert rule_name in page.locator("#rules").inner_text()
    stored = web.db.read(
        lambda s: rules.to_out(s, s.scalars(select(EarningRule).where(EarningRule.name == rule_name)).one())
    )
    assert (stored.kind, stored.points, stored.per_amount, stored.category, stored.active) == (
        "category",
        3,
        Decimal("500.00"),
        "tyres",
        True,
    )
    assert stored.conditions.weekdays == [6]

    # Sign out: the back office asks for a sign-in again.
    page.click("header form[action='/admin/sign-out'] button")
    assert "/admin/sign-in" in page.url
    assert page.locator(".flash").inner_text() == "You have signed out."
    page.goto(web.url("/admin/members"))
    assert "/admin/sign-in?next=%2Fadmin%2Fmembers" in page.url


def test_roles_see_and_do_only_their_part(web: WebServer, page: Any, sign_in: Any) -> None:
    member = enrol(web, f"Roles{uuid.uuid4().hex[:6]}")
    expect_status(page, 403)
    sign_in(page, "cashier")
    # A cashier lands on the members list: no dashboard, no configuration in the menu.
    assert page.url.endswith("/admin/members")
    menu = page.locator("nav.nav").inner_text()
    assert "Members" in menu
    assert "Earning rules" not in menu and "Dashboard" not in menu and "API keys" not in menu
    response = page.goto(web.url("/admin/rules/new"))
    assert response is not None and response.status == 403
    assert page.locator("h1").inner_text() == "Your role does not allow this"
    # The member page shows the card actions but not the agent's point adjustment.
    page.goto(web.url(f"/admin/members/{member['id']}"))
    assert page.locator("#adjust-form").count() == 0
    assert page.locator("#cards form[action$='/block']").count() == 1
    # Posting the adjustment anyway (with a valid form token) is refused and changes nothing.
    token = page.locator("input[name=csrf_token]").first.input_value()
    r = page.request.post(
        web.url(f"/admin/members/{member['id']}/points"),
        form={"csrf_token": token, "points": "50", "reason": "x", "adjust_external_id": "web-x-1"},
    )
    assert r.status == 403
    assert available(web, member["id"]) == 0

    # An agent may adjust points but not configure.
    page.context.clear_cookies()
    sign_in(page, "agent")
    page.goto(web.url(f"/admin/members/{member['id']}"))
    assert page.locator("#adjust-form").count() == 1
    assert page.goto(web.url("/admin/tiers")).status == 403  # type: ignore[union-attr]


def test_forged_posts_are_refused(web: WebServer, page: Any, sign_in: Any) -> None:
    member = enrol(web, f"Csrf{uuid.uuid4().hex[:6]}")
    sign_in(page, "admin")
    page.goto(web.url(f"/admin/members/{member['id']}"))
    token = page.locator("input[name=csrf_token]").first.input_value()
    url = web.url(f"/admin/members/{member['id']}/points")
    body = {"points": "500", "reason": "forged", "adjust_external_id": f"web-forged-{uuid.uuid4().hex}"}
    for form in (body, {**body, "csrf_token": "not-the-token"}, {**body, "csrf_token": token[:-2] + "xx"}):
        r = page.request.post(url, form=form)
        assert r.status == 403
        assert "The form expired or did not come from this site" in r.text()
    # The right token from another site's page (its Origin) is refused too.
    r = page.request.post(url, form={**body, "csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert r.status == 403
    assert available(web, member["id"]) == 0
    assert ledger_count(web, member["id"]) == 0
    # The same form with its token goes through.
    r = page.request.post(url, form={**body, "csrf_token": token})
    assert r.status == 200 and r.url.endswith(f"/admin/members/{member['id']}")
    assert available(web, member["id"]) == 500


def test_sign_in_rate_limit(web: WebServer, page: Any) -> None:
    email = f"limited{uuid.uuid4().hex[:6]}@test.patron"
    web.db.write(lambda s: access.create_user(s, SYSTEM, email=email, password=STAFF_PASSWORD, role=Role.ANALYST))
    expect_status(page, 401, 429)

    def attempt(password: str) -> str:
        page.goto(web.url("/admin/sign-in"))
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("form[action='/admin/sign-in'] button[type=submit]")
        return str(page.locator(".alert").inner_text()) if page.locator(".alert").count() else ""

    for _ in range(5):
        assert attempt("wrong-password") == "The email or the password is wrong."
    # The sixth try is refused even with the right password.
    assert attempt(STAFF_PASSWORD) == "Too many failed sign-ins. Try again in 15 minutes."
    assert "/admin/sign-in" in page.url
    failures = web.db.read(
        lambda s: s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "user.sign_in_failed")
        )
    )
    assert failures >= 5
    # The failures are recorded under a keyed hash, never the email.
    assert not web.db.read(lambda s: s.scalars(select(AuditEntry).where(AuditEntry.entity_id.like(f"%{email}%"))).all())


def test_every_response_carries_the_security_headers(web: WebServer, page: Any) -> None:
    response = page.goto(web.url("/admin/sign-in"))
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    cookies = {c["name"]: c for c in page.context.cookies()}
    csrf = cookies["patron_csrf"]
    assert csrf["httpOnly"] is True and csrf["sameSite"] == "Lax"
    assert re.fullmatch(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", csrf["value"])
