"""The rewards catalogue in the back office: configured by a marketer, read by other staff."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.audit.models import AuditEntry
from patron.rewards import service as rewards
from patron.rewards.models import Reward
from patron.rewards.schemas import RewardIn, RewardOut, RewardPatch
from tests.web.conftest import STAFF_PASSWORD, WebServer, expect_status

HEADINGS = {"en": ("Rewards", "New reward"), "ru": ("Награды", "Новая награда"), "zh": ("奖励", "新奖励")}


def reward_count(web: WebServer) -> int:
    return web.db.read(lambda s: int(s.scalar(select(func.count()).select_from(Reward)) or 0))


def stored(web: WebServer, name: str) -> RewardOut:
    return web.db.read(lambda s: rewards.to_out(s, s.scalars(select(Reward).where(Reward.name == name)).one()))


def user_id(web: WebServer, role: str) -> str:
    return web.db.read(lambda s: str(access.verify_user(s, web.staff[role], STAFF_PASSWORD).id))  # type: ignore[union-attr]


def audited(web: WebServer, reward_id: uuid.UUID) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    rows = web.db.read(
        lambda s: s.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == str(reward_id)).order_by(AuditEntry.id)
        ).all()
    )
    return [(a.action, a.actor_kind, a.actor_id, a.details) for a in rows]


def row(page: Any, name: str) -> Any:
    return page.locator("#rewards tbody tr", has_text=name)


def test_a_marketer_configures_a_percent_discount(web: WebServer, page: Any, sign_in: Any, shot: Any) -> None:
    name = f"10 % off a service {uuid.uuid4().hex[:4]}"
    before = reward_count(web)
    expect_status(page, 422)
    sign_in(page, "marketer")
    page.click("nav.nav a[href='/admin/rewards']")
    page.click("a[href='/admin/rewards/new']")

    # The script shows the fields of the chosen kind only.
    form = page.locator("#reward-form")
    assert form.locator("[data-field=value]").is_visible()
    assert form.locator("[data-field=max_discount]").is_visible()
    assert form.locator("[data-field=sku]").is_hidden()
    page.select_option("#reward-form select[name=kind]", "free_item")
    assert form.locator("[data-field=sku]").is_visible()
    assert form.locator("[data-field=value]").is_hidden()
    page.select_option("#reward-form select[name=kind]", "amount_discount")
    assert form.locator("[data-field=value]").is_visible()
    assert form.locator("[data-field=max_discount]").is_hidden()
    page.select_option("#reward-form select[name=kind]", "percent_discount")

    # A percent above 100: refused, said next to the field, what was typed kept, nothing stored.
    page.fill("#reward-form input[name=name]", name)
    page.fill("#reward-form input[name=value]", "150")
    page.fill("#reward-form input[name=max_discount]", "1500")
    page.fill("#reward-form input[name=cost_points]", "300")
    page.fill("#reward-form input[name=valid_days]", "60")
    page.fill("#reward-form input[name=stock]", "10")
    page.fill("#reward-form input[name=limit_per_member]", "1")
    page.select_option("#reward-form select[name=segments]", ["vip", "regular"])
    page.click("#reward-form button[type=submit]")
    alert = page.locator(".alert").inner_text()
    assert "Please check what you entered" in alert
    assert "Discount: a percent discount is above 0 and at most 100" in alert
    assert form.locator("[data-field=value] .field-error").inner_text() == (
        "a percent discount is above 0 and at most 100"
    )
    assert form.locator("input[name=value]").get_attribute("aria-invalid") == "true"
    assert form.locator("input[name=name]").input_value() == name
    assert form.locator("input[name=value]").input_value() == "150"
    assert form.locator("select[name=kind]").input_value() == "percent_discount"
    assert sorted(form.locator("select[name=segments]").evaluate("s => [...s.selectedOptions].map(o => o.value)")) == [
        "regular",
        "vip",
    ]
    assert reward_count(web) == before
    shot(page, "admin-reward-refused-en")

    # Put right: created, listed with its terms.
    page.fill("#reward-form input[name=value]", "10")
    page.click("#reward-form button[type=submit]")
    assert page.url.endswith("/admin/rewards")
    assert page.locator(".flash").inner_text() == f"The reward “{name}” is created."
    cells = row(page, name).locator("td")
    assert cells.nth(1).inner_text() == "Percent discount"
    assert cells.nth(2).inner_text() == "10 % (at most RUB1,500.00)"
    assert cells.nth(3).inner_text() == "300"
    assert cells.nth(4).inner_text() == "10 left\n0 claimed"
    assert cells.nth(5).inner_text() == "1"
    assert cells.nth(6).inner_text() == "segments: regular, vip"
    assert cells.nth(7).inner_text() == "60"
    assert cells.nth(8).inner_text() == "active"
    reward = stored(web, name)
    assert (
        reward.kind,
        reward.value,
        reward.max_discount,
        reward.sku,
        reward.cost_points,
        reward.stock,
        reward.limit_per_member,
        reward.tiers,
        reward.segments,
        reward.valid_days,
        reward.active,
        reward.description,
    ) == (
        "percent_discount",
        Decimal("10"),
        Decimal("1500.00"),
        None,
        300,
        10,
        1,
        [],
        ["regular", "vip"],
        60,
        True,
        None,
    )
    marketer = user_id(web, "marketer")
    assert audited(web, reward.id) == [("reward.create", "user", marketer, {"kind": "percent_discount", "name": name})]

    # Edit: the kind is fixed, so only its fields are on the form.
    row(page, name).locator(f"a[href='/admin/rewards/{reward.id}']").click()
    assert page.locator("h1").inner_text() == "Edit reward"
    assert form.locator("select[name=kind]").count() == 0
    assert form.locator("input[name=sku]").count() == 0
    assert form.locator("input[name=stock]").input_value() == "10"
    # A required field emptied: refused next to it, nothing changed.
    page.fill("#reward-form input[name=cost_points]", "")
    page.fill("#reward-form input[name=stock]", "25")
    page.click("#reward-form button[type=submit]")
    assert form.locator("[data-field=cost_points] .field-error").inner_text() == "this field is required"
    assert "Cost in points: this field is required" in page.locator(".alert").inner_text()
    assert form.locator("input[name=stock]").input_value() == "25"
    assert stored(web, name) == reward

    # More stock and deactivated: saved, and the list says so.
    page.fill("#reward-form input[name=cost_points]", "350")
    page.uncheck("#reward-form input[name=active]")
    page.click("#reward-form button[type=submit]")
    assert page.url.endswith("/admin/rewards")
    assert page.locator(".flash").inner_text() == f"The reward “{name}” is saved."
    cells = row(page, name).locator("td")
    assert cells.nth(3).inner_text() == "350"
    assert cells.nth(4).inner_text() == "25 left\n0 claimed"
    assert cells.nth(8).inner_text() == "inactive"
    edited = stored(web, name)
    assert (edited.cost_points, edited.stock, edited.active, edited.value, edited.segments) == (
        350,
        25,
        False,
        Decimal("10"),
        ["regular", "vip"],
    )
    fields = ["active", "cost_points", "description", "limit_per_member", "max_discount", "name", "segments"]
    fields += ["stock", "tiers", "valid_days", "value"]
    assert audited(web, reward.id)[-1] == ("reward.update", "user", marketer, {"fields": fields})

    # Active again from the list.
    row(page, name).locator("form[action$='/active'] button").click()
    assert page.locator(".flash").inner_text() == f"The reward “{name}” is active."
    assert stored(web, name).active is True

    # Screenshots of the list and the form in each language.
    for lang in ("en", "ru", "zh"):
        page.goto(web.url(f"/admin/rewards?lang={lang}"))
        assert page.locator("h1").inner_text() == HEADINGS[lang][0]
        shot(page, f"admin-rewards-{lang}")
        page.goto(web.url("/admin/rewards/new"))
        assert page.locator("h1").inner_text() == HEADINGS[lang][1]
        shot(page, f"admin-reward-new-{lang}")
        page.goto(web.url(f"/admin/rewards/{reward.id}"))
        shot(page, f"admin-reward-edit-{lang}")
    page.goto(web.url("/admin/rewards?lang=ru"))
    assert row(page, name).locator("td").nth(2).inner_text() == "10 % (не больше 1\u00a0500,00\u00a0₽)"


def test_saving_the_form_keeps_the_claims_made_while_it_was_open(web: WebServer, page: Any, sign_in: Any) -> None:
    name = f"Thermal mug {uuid.uuid4().hex[:4]}"
    reward = web.db.write(
        lambda s: rewards.to_out(
            s, rewards.create(s, SYSTEM, RewardIn(name=name, kind="gift", cost_points=400, valid_days=30, stock=50))
        )
    )
    sign_in(page, "admin")
    page.goto(web.url(f"/admin/rewards/{reward.id}"))
    assert page.locator("#reward-form input[name=value]").count() == 0
    # Meanwhile members claim three (the stock as the claims leave it).
    web.db.write(lambda s: rewards.update(s, SYSTEM, reward.id, RewardPatch(stock=47)))
    page.fill("#reward-form input[name=name]", f"{name} (black)")
    page.click("#reward-form button[type=submit]")
    assert page.url.endswith("/admin/rewards")
    assert (stored(web, f"{name} (black)").stock, stored(web, f"{name} (black)").kind) == (47, "gift")


def test_the_form_works_without_javascript(web: WebServer, browser: Any, sign_in: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        sign_in(pg, "admin")
        pg.goto(web.url("/admin/rewards/new"))
        form = pg.locator("#reward-form")
        assert form.locator("[data-field=sku]").is_visible() and form.locator("[data-field=value]").is_visible()
        name = f"Free car wash {uuid.uuid4().hex[:4]}"
        pg.fill("#reward-form input[name=name]", name)
        pg.select_option("#reward-form select[name=kind]", "free_item")
        pg.fill("#reward-form input[name=sku]", "SRV-WASH")
        pg.fill("#reward-form input[name=value]", "5")  # a discount typed for a free item: said so
        pg.fill("#reward-form input[name=cost_points]", "250")
        pg.select_option("#reward-form select[name=tiers]", ["member"])
        pg.click("#reward-form button[type=submit]")
        assert form.locator("[data-field=value] .field-error").inner_text() == (
            "value does not apply to a free_item reward"
        )
        pg.fill("#reward-form input[name=value]", "")
        pg.click("#reward-form button[type=submit]")
        assert pg.url.endswith("/admin/rewards")
        created = stored(web, name)
        assert (created.kind, created.sku, created.value, created.tiers, created.valid_days, created.stock) == (
            "free_item",
            "SRV-WASH",
            None,
            ["member"],
            30,
            None,
        )
        cells = row(pg, name).locator("td")
        assert cells.nth(2).inner_text() == "SKU SRV-WASH"
        assert cells.nth(4).inner_text() == "unlimited\n0 claimed"
        assert cells.nth(5).inner_text() == "no limit"
        assert cells.nth(6).inner_text() == "tiers: Member"
    finally:
        context.close()


def test_other_roles_read_the_catalogue_and_cannot_configure(web: WebServer, page: Any, sign_in: Any) -> None:
    name = f"500 RUB off {uuid.uuid4().hex[:4]}"
    reward = web.db.write(
        lambda s: rewards.to_out(
            s,
            rewards.create(
                s,
                SYSTEM,
                RewardIn(name=name, kind="amount_discount", value=Decimal(500), cost_points=500, valid_days=90),
            ),
        )
    )
    expect_status(page, 403)
    sign_in(page, "cashier")
    assert "Rewards" in page.locator("nav.nav").inner_text()
    page.click("nav.nav a[href='/admin/rewards']")
    cells = row(page, name).locator("td")
    assert cells.nth(0).inner_text() == name
    assert cells.nth(2).inner_text() == "RUB500.00"
    assert cells.nth(6).inner_text() == "every member"
    assert page.locator("a[href='/admin/rewards/new']").count() == 0
    assert page.locator("#rewards form, #rewards a").count() == 0
    for path in ("/admin/rewards/new", f"/admin/rewards/{reward.id}"):
        response = page.goto(web.url(path))
        assert response is not None and response.status == 403
        assert page.locator("h1").inner_text() == "Your role does not allow this"
    # Posting anyway, with a valid form token, is refused and changes nothing.
    page.goto(web.url("/admin/rewards"))
    token = page.locator("input[name=csrf_token]").first.input_value()
    before = reward_count(web)
    posts = (
        ("/admin/rewards/new", {"name": "Cashier's own", "kind": "gift", "cost_points": "0", "valid_days": "5"}),
        (f"/admin/rewards/{reward.id}", {"name": "Renamed", "cost_points": "1", "valid_days": "5"}),
        (f"/admin/rewards/{reward.id}/active", {}),
    )
    for path, body in posts:
        r = page.request.post(web.url(path), form={"csrf_token": token, **body})
        assert r.status == 403
    assert reward_count(web) == before
    assert stored(web, name) == reward

    # The analyst reads it too, without the configuring controls.
    page.context.clear_cookies()
    sign_in(page, "analyst")
    page.goto(web.url("/admin/rewards"))
    assert row(page, name).count() == 1
    assert page.locator("a[href='/admin/rewards/new']").count() == 0
