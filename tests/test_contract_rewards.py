"""Black-box contract checks of API.md "Rewards and coupons" and "Transactions" step 1, through HTTP.

Every sum below is worked by hand from the document: percent discounts half-up to the kopeck and
capped by `max_discount`, amount discounts at most the total, a free item at one unit price.
After every refusal the member's points and ledger, the reward's stock and the coupon are read back
unchanged.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from patron.kit import clock
from tests.helpers import assert_problem
from tests.test_contract_common import (
    balance,
    bought,
    buy,
    claim,
    get_member,
    give,
    is_int,
    is_money,
    is_time,
    ledger,
    member,
    member_view,
    ok,
    reward,
    run_job,
    spend_rule,
    uid,
)

COUPON_FIELDS = {"code", "reward_id", "member_id", "status", "expires_at", "used_at", "transaction_id"}
REWARD_FIELDS = {
    "id",
    "name",
    "kind",
    "value",
    "sku",
    "max_discount",
    "cost_points",
    "stock",
    "limit_per_member",
    "tiers",
    "segments",
    "valid_days",
    "active",
}
TX_FIELDS = {
    "id",
    "external_id",
    "member_id",
    "total",
    "discount",
    "points_redeemed",
    "points_value",
    "amount_due",
    "points_earned",
    "breakdown",
    "balance",
    "tier",
    "coupons",
}
LADDER = {
    "metric": "points",
    "window_days": None,
    "tiers": [
        {"code": "base", "name": "Base", "threshold": 0, "multiplier": "1", "benefits": []},
        {"code": "gold", "name": "Gold", "threshold": 500, "multiplier": "1", "benefits": ["lounge"]},
    ],
}


def coupon(api: Any, code: str, role: str = "cashier") -> dict[str, Any]:
    return ok(api.get(f"/v1/coupons/{code}", role=role), 200)


def stock(api: Any, reward_id: str) -> Any:
    return ok(api.get(f"/v1/rewards/{reward_id}", role="analyst"), 200)["stock"]


def coupon_for(api: Any, member_id: str, **terms: Any) -> str:
    """A free coupon of a new reward with these terms, claimed by the member."""
    return str(ok(claim(api, member_id, reward(api, **terms)["id"]))["code"])


def world(api: Any, member_id: str, reward_ids: list[str] = [], codes: list[str] = []) -> dict[str, Any]:  # noqa: B006
    """Everything a refused request must leave as it was."""
    return {
        "member": member_view(api, member_id),
        "stock": [ok(api.get(f"/v1/rewards/{r}"), 200) for r in reward_ids],
        "coupons": [coupon(api, c) for c in codes],
    }


def check_tx(t: dict[str, Any]) -> dict[str, Any]:
    assert set(t) >= TX_FIELDS, set(TX_FIELDS) - set(t)
    for k in ("total", "discount", "points_value", "amount_due"):
        is_money(t[k])
    for k in ("points_redeemed", "points_earned"):
        is_int(t[k])
    assert set(t["balance"]) >= {"available", "pending"}
    is_int(t["balance"]["available"])
    is_int(t["balance"]["pending"])
    assert set(t["tier"]) >= {"code", "name"}
    for b in t["breakdown"]:
        assert set(b) >= {"rule_id", "rule_name", "points"}
        is_int(b["points"])
    assert sum(b["points"] for b in t["breakdown"]) == t["points_earned"]
    for c in t["coupons"]:
        assert set(c) >= {"code", "discount"}
        is_money(c["discount"])
    return t


# The catalogue -------------------------------------------------------------------------------------


def test_reward_answer_names_every_field_with_its_type(api):
    r = reward(
        api,
        name="Ten percent",
        kind="percent_discount",
        value="10",
        max_discount="150.00",
        cost_points=200,
        stock=5,
        limit_per_member=2,
        tiers=[],
        segments=["vip"],
        valid_days=14,
        active=True,
    )
    assert set(r) >= REWARD_FIELDS, REWARD_FIELDS - set(r)
    uuid.UUID(r["id"])
    assert (r["name"], r["kind"], r["sku"]) == ("Ten percent", "percent_discount", None)
    assert Decimal(r["value"]) == 10 and isinstance(r["value"], str)
    assert r["max_discount"] == "150.00"
    assert (r["cost_points"], r["stock"], r["limit_per_member"], r["valid_days"]) == (200, 5, 2, 14)
    assert (r["tiers"], r["segments"], r["active"]) == ([], ["vip"], True)
    assert ok(api.get(f"/v1/rewards/{r['id']}", role="cashier"), 200) == r

    amount = reward(api, kind="amount_discount", value="300", cost_points=50)
    assert amount["value"] == "300.00"
    assert (amount["stock"], amount["limit_per_member"], amount["max_discount"]) == (None, None, None)
    free = reward(api, kind="free_item", sku="OIL-1L")
    assert (free["sku"], free["value"]) == ("OIL-1L", None)
    for kind in ("gift", "privilege"):
        assert reward(api, kind=kind)["kind"] == kind

    listed = ok(api.get("/v1/rewards?limit=500", role="analyst"), 200)["items"]
    assert {i["id"] for i in listed} >= {r["id"], amount["id"], free["id"]}

    patched = ok(api.patch(f"/v1/rewards/{r['id']}", {"stock": 9, "active": False}, role="marketer"), 200)
    assert (patched["stock"], patched["active"], patched["name"]) == (9, False, "Ten percent")
    assert ok(api.get(f"/v1/rewards/{r['id']}"), 200) == patched


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "percent_discount"}, "value"),
        ({"kind": "amount_discount"}, "value"),
        ({"kind": "free_item"}, "sku"),
        ({"kind": "coupon"}, "kind"),
        ({"kind": "gift", "cost_points": -1}, "cost_points"),
        ({"kind": "gift", "cost_points": "many"}, "cost_points"),
        ({"kind": "gift", "stock": -1}, "stock"),
        ({"kind": "gift", "limit_per_member": 0}, "limit_per_member"),
        ({"kind": "percent_discount", "value": "150"}, "value"),
    ],
)
def test_reward_validation_is_422_and_creates_nothing(api, body, field):
    full = {"name": "Bad", "cost_points": 10, "valid_days": 10, **body}
    assert_problem(api.post("/v1/rewards", full, role="marketer"), 422, "validation_error", field=field)
    assert ok(api.get("/v1/rewards"), 200)["items"] == []


def test_reward_roles(api):
    body = {"name": "r", "kind": "gift", "cost_points": 0, "valid_days": 1}
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.post("/v1/rewards", body, role=role), 403, "forbidden")
    r = reward(api, role="admin")
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.patch(f"/v1/rewards/{r['id']}", {"name": "x"}, role=role), 403, "forbidden")
    assert ok(api.get("/v1/rewards"), 200)["items"] == [ok(api.get(f"/v1/rewards/{r['id']}"), 200)]
    assert ok(api.get(f"/v1/rewards/{r['id']}"), 200)["name"] == "Contract reward"


# Claims ------------------------------------------------------------------------------------------


def test_claim_spends_points_takes_stock_and_issues_a_coupon(api):
    m = member(api, 1000)
    r = reward(api, kind="amount_discount", value="100", cost_points=300, stock=3, valid_days=10)
    before = clock.now()
    answer = claim(api, m, r["id"], "claim-one")
    assert answer.status_code == 201, answer.text
    assert "Idempotent-Replayed" not in answer.headers
    c = answer.json()
    assert set(c) >= COUPON_FIELDS, COUPON_FIELDS - set(c)
    assert isinstance(c["code"], str) and c["code"]
    assert (c["reward_id"], c["member_id"], c["status"]) == (r["id"], m, "issued")
    assert (c["used_at"], c["transaction_id"]) == (None, None)
    expires = is_time(c["expires_at"])
    assert before + timedelta(days=10) - timedelta(seconds=5) <= expires <= clock.now() + timedelta(days=10)
    assert coupon(api, c["code"]) == c

    assert balance(api, m)["available"] == 700
    assert balance(api, m)["redeemed"] == 300
    newest = ledger(api, m)[0]
    assert (newest["kind"], newest["points"], newest["balance_after"]) == ("redeem", -300, 700)
    assert stock(api, r["id"]) == 2
    assert get_member(api, m)["points"]["available"] == 700


@pytest.mark.parametrize("role", ["cashier", "agent", "admin"])
def test_claim_roles_allowed(api, role):
    m = member(api, 10)
    r = reward(api, cost_points=10)
    assert claim(api, m, r["id"], role=role).status_code == 201


def test_claim_roles_refused_change_nothing(api):
    m = member(api, 100)
    r = reward(api, cost_points=10, stock=4)
    before = world(api, m, [r["id"]])
    for role in ("marketer", "analyst"):
        assert_problem(claim(api, m, r["id"], f"by-{role}", role=role), 403, "forbidden")
    assert_problem(claim(api, m, r["id"], "anon", role=None), 401, "unauthorized")
    assert world(api, m, [r["id"]]) == before
    # The refused external_ids were not taken.
    assert claim(api, m, r["id"], "by-marketer").status_code == 201


def test_claim_idempotency(api):
    m = member(api, 1000)
    other_member = member(api, 1000)
    r = reward(api, cost_points=100, stock=5)
    other_reward = reward(api, cost_points=100, stock=5)
    first = claim(api, m, r["id"], "same-claim")
    assert first.status_code == 201
    after_first = world(api, m, [r["id"], other_reward["id"]], [first.json()["code"]])

    again = claim(api, m, r["id"], "same-claim", role="agent")
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert world(api, m, [r["id"], other_reward["id"]], [first.json()["code"]]) == after_first

    # Another reward or another member under the same external_id: a different request.
    assert_problem(claim(api, m, other_reward["id"], "same-claim"), 409, "idempotency_conflict")
    assert_problem(claim(api, other_member, r["id"], "same-claim"), 409, "idempotency_conflict")
    assert world(api, m, [r["id"], other_reward["id"]], [first.json()["code"]]) == after_first
    assert balance(api, other_member)["available"] == 1000

    # Still the first answer after the coupon was used: same status, same body.
    ok(api.patch(f"/v1/rewards/{r['id']}", {"name": "Renamed"}, role="marketer"), 200)
    bought(api, m, total="50.00", coupons=[first.json()["code"]])
    late = claim(api, m, r["id"], "same-claim")
    assert (late.status_code, late.headers.get("Idempotent-Replayed")) == (201, "true")
    assert late.json() == first.json()
    assert balance(api, m)["available"] == 900
    assert stock(api, r["id"]) == 4


def test_claim_needs_an_external_id(api):
    m = member(api, 100)
    r = reward(api, cost_points=10)
    before = world(api, m, [r["id"]])
    path = f"/v1/members/{m}/rewards/{r['id']}/claims"
    assert_problem(api.post(path, {}, role="cashier"), 422, "validation_error", field="external_id")
    assert_problem(api.post(path, {"external_id": ""}, role="cashier"), 422, "validation_error", field="external_id")
    assert_problem(claim(api, m, str(uuid.uuid4())), 404, "not_found")
    assert_problem(claim(api, str(uuid.uuid4()), r["id"]), 404, "not_found")
    assert world(api, m, [r["id"]]) == before


def test_insufficient_points(api):
    m = member(api, 99)
    r = reward(api, cost_points=100, stock=2)
    before = world(api, m, [r["id"]])
    problem = assert_problem(claim(api, m, r["id"], "poor"), 409, "insufficient_points")
    assert problem["detail"]
    assert world(api, m, [r["id"]]) == before
    give(api, m, 1)
    assert claim(api, m, r["id"], "poor").status_code == 201
    assert balance(api, m)["available"] == 0


def test_pending_points_cannot_pay_for_a_claim(api):
    ok(api.patch("/v1/program", {"pending_days": 3}, role="marketer"), 200)
    spend_rule(api, 1, "1.00")
    m = member(api)
    t = bought(api, m, total="500.00")
    assert t["balance"] == {"available": 0, "pending": 500}
    r = reward(api, cost_points=100)
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"]), 409, "insufficient_points")
    assert world(api, m, [r["id"]]) == before


def test_out_of_stock(api):
    a, b = member(api, 100), member(api, 100)
    r = reward(api, cost_points=10, stock=1)
    ok(claim(api, a, r["id"]))
    assert stock(api, r["id"]) == 0
    before = world(api, b, [r["id"]])
    assert_problem(claim(api, b, r["id"]), 409, "out_of_stock")
    assert world(api, b, [r["id"]]) == before
    empty = reward(api, cost_points=10, stock=0)
    assert_problem(claim(api, b, empty["id"]), 409, "out_of_stock")
    assert world(api, b, [r["id"]]) == before
    unlimited = reward(api, cost_points=1, stock=None)
    for _ in range(3):
        ok(claim(api, b, unlimited["id"]))
    assert stock(api, unlimited["id"]) is None


def test_limit_per_member(api):
    m, other = member(api, 1000), member(api, 1000)
    r = reward(api, cost_points=10, limit_per_member=2, stock=10)
    ok(claim(api, m, r["id"]))
    ok(claim(api, m, r["id"]))
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"]), 409, "limit_reached")
    assert world(api, m, [r["id"]]) == before
    assert claim(api, other, r["id"]).status_code == 201
    assert stock(api, r["id"]) == 7


def test_not_eligible_by_tier(api):
    ok(api.put("/v1/tiers", LADDER, role="marketer"), 200)
    spend_rule(api, 1, "1.00")
    m = member(api, 100)
    r = reward(api, cost_points=10, tiers=["gold"], stock=5)
    assert get_member(api, m)["tier"]["code"] == "base"
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"], "tier-claim"), 409, "not_eligible")
    assert world(api, m, [r["id"]]) == before
    t = bought(api, m, total="500.00")
    assert t["tier"] == {"code": "gold", "name": "Gold"}
    assert claim(api, m, r["id"], "tier-claim").status_code == 201
    assert stock(api, r["id"]) == 4


def test_not_eligible_by_segment_until_the_refresh(api):
    segment = {
        "code": "spenders",
        "name": "Spenders",
        "match": "all",
        "conditions": [{"field": "spend", "op": "gte", "value": "100.00"}],
    }
    ok(api.post("/v1/segments", segment, role="marketer"))
    m = member(api, 100)
    outsider = member(api, 100)
    bought(api, m, total="150.00")
    r = reward(api, cost_points=10, segments=["spenders"])
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"]), 409, "not_eligible")
    assert world(api, m, [r["id"]]) == before
    run_job(api, "refresh-segments")
    assert "spenders" in get_member(api, m)["segments"]
    assert claim(api, m, r["id"]).status_code == 201
    before = world(api, outsider, [r["id"]])
    assert_problem(claim(api, outsider, r["id"]), 409, "not_eligible")
    assert world(api, outsider, [r["id"]]) == before


def test_an_inactive_reward_is_not_eligible(api):
    m = member(api, 100)
    r = reward(api, cost_points=10, stock=2, active=False)
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"], "off"), 409, "not_eligible")
    assert world(api, m, [r["id"]]) == before
    ok(api.patch(f"/v1/rewards/{r['id']}", {"active": True}, role="marketer"), 200)
    assert claim(api, m, r["id"], "off").status_code == 201


def test_a_replay_answers_the_first_answer_even_after_the_member_was_blocked(api):
    m = member(api, 100)
    r = reward(api, cost_points=10)
    first = claim(api, m, r["id"], "before-block")
    assert first.status_code == 201
    ok(api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent"), 200)
    after = world(api, m, [r["id"]])
    again = claim(api, m, r["id"], "before-block")
    assert (again.status_code, again.headers.get("Idempotent-Replayed"), again.json()) == (201, "true", first.json())
    assert world(api, m, [r["id"]]) == after


def test_blocked_member_cannot_claim(api):
    m = member(api, 500)
    r = reward(api, cost_points=10, stock=3)
    ok(api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent"), 200)
    before = world(api, m, [r["id"]])
    assert_problem(claim(api, m, r["id"], "blocked"), 409, "member_blocked")
    assert world(api, m, [r["id"]]) == before
    ok(api.post(f"/v1/members/{m}/unblock", {}, role="agent"), 200)
    assert claim(api, m, r["id"], "blocked").status_code == 201


# Coupons at the till: the arithmetic of step 1 ----------------------------------------------------


@pytest.mark.parametrize(
    ("total", "percent", "cap", "discount"),
    [
        ("0.50", "1", None, "0.01"),  # 0.005: half up (half-even would give 0.00)
        ("0.01", "50", None, "0.01"),  # 0.005
        ("10.10", "5", None, "0.51"),  # 0.505
        ("10.50", "5", None, "0.53"),  # 0.525 (half-even: 0.52)
        ("33.30", "15", None, "5.00"),  # 4.995
        ("0.30", "2.5", None, "0.01"),  # 0.0075
        ("0.10", "4", None, "0.00"),  # 0.004: rounds down
        ("999.99", "33.3", None, "333.00"),  # 332.99667
        ("1000.00", "20", "150.00", "150.00"),  # capped
        ("500.00", "20", "150.00", "100.00"),  # under the cap
        ("750.00", "20", "150.00", "150.00"),  # exactly the cap
        ("80.00", "100", None, "80.00"),
    ],
)
def test_percent_discount(api, total, percent, cap, discount):
    m = member(api)
    terms = {"max_discount": cap} if cap else {}
    code = coupon_for(api, m, kind="percent_discount", value=percent, **terms)
    t = check_tx(bought(api, m, total=total, coupons=[code]))
    due = Decimal(total) - Decimal(discount)
    assert (t["total"], t["discount"], t["amount_due"]) == (total, discount, f"{due:.2f}")
    assert t["coupons"] == [{"code": code, "discount": discount}]


def test_amount_discount_is_at_most_the_total(api):
    m = member(api)
    small = coupon_for(api, m, kind="amount_discount", value="150")
    t = check_tx(bought(api, m, total="1000.00", coupons=[small]))
    assert (t["discount"], t["amount_due"], t["coupons"]) == (
        "150.00",
        "850.00",
        [{"code": small, "discount": "150.00"}],
    )
    big = coupon_for(api, m, kind="amount_discount", value="500")
    t = check_tx(bought(api, m, total="299.99", coupons=[big]))
    assert (t["discount"], t["amount_due"]) == ("299.99", "0.00")
    assert t["coupons"] == [{"code": big, "discount": "299.99"}]


def test_free_item_is_one_unit_price_of_the_sku_in_the_basket(api):
    m = member(api)
    oil = coupon_for(api, m, kind="free_item", sku="OIL")
    items = [
        {"sku": "FILTER", "name": "Filter", "category": "parts", "quantity": 1, "unit_price": "300.00"},
        {"sku": "OIL", "name": "Oil 1 l", "category": "oil", "quantity": 3, "unit_price": "450.50"},
    ]
    t = check_tx(bought(api, m, items=items, coupons=[oil]))
    assert (t["total"], t["discount"], t["amount_due"]) == ("1651.50", "450.50", "1201.00")
    assert t["coupons"] == [{"code": oil, "discount": "450.50"}]


def test_free_item_without_its_sku_is_not_applicable_and_changes_nothing(api):
    m = member(api, 100)
    wash = coupon_for(api, m, kind="free_item", sku="WASH")
    items = [{"sku": "OIL", "quantity": 1, "unit_price": "450.00"}]
    before = world(api, m, [], [wash])
    assert_problem(buy(api, m, items=items, coupons=[wash]), 409, "coupon_not_applicable")
    assert_problem(buy(api, m, total="450.00", coupons=[wash]), 409, "coupon_not_applicable")
    assert_problem(buy(api, m, total="450.00", coupons=[wash], redeem_points=10), 409, "coupon_not_applicable")
    assert world(api, m, [], [wash]) == before
    assert coupon(api, wash)["status"] == "issued"


def test_gift_and_privilege_coupons_take_nothing_off(api):
    m = member(api)
    gift = coupon_for(api, m, kind="gift")
    t = check_tx(bought(api, m, total="100.00", coupons=[gift]))
    assert (t["discount"], t["amount_due"], t["coupons"]) == ("0.00", "100.00", [{"code": gift, "discount": "0.00"}])
    assert coupon(api, gift)["status"] == "used"


def test_a_used_coupon_reads_used_with_the_transaction(api):
    m = member(api)
    code = coupon_for(api, m, kind="amount_discount", value="25")
    t = check_tx(bought(api, m, total="100.00", coupons=[code]))
    c = coupon(api, code, role="analyst")
    assert (c["status"], c["transaction_id"], c["member_id"]) == ("used", t["id"], m)
    used_at = is_time(c["used_at"])
    assert abs(used_at - clock.now()) < timedelta(minutes=5)
    assert ok(api.get(f"/v1/transactions/{t['id']}"), 200) == t


def test_discount_then_points_then_earning_on_the_net(api):
    spend_rule(api, 1, "10.00")
    m = member(api, 100)
    code = coupon_for(api, m, kind="amount_discount", value="200")
    t = check_tx(bought(api, m, total="1000.00", coupons=[code], redeem_points=100))
    assert (t["total"], t["discount"], t["points_value"], t["amount_due"]) == ("1000.00", "200.00", "100.00", "700.00")
    assert (t["points_redeemed"], t["points_earned"]) == (100, 70)
    assert t["balance"] == {"available": 70, "pending": 0}


def test_points_paying_more_than_is_left_after_the_discount_is_422_and_changes_nothing(api):
    m = member(api, 100)
    code = coupon_for(api, m, kind="amount_discount", value="50")
    before = world(api, m, [], [code])
    assert_problem(buy(api, m, total="100.00", coupons=[code], redeem_points=51), 422, "validation_error")
    assert_problem(buy(api, m, total="100.00", coupons=[code], redeem_points=101), 409, "insufficient_points")
    assert world(api, m, [], [code]) == before
    t = bought(api, m, total="100.00", coupons=[code], redeem_points=50)
    assert (t["discount"], t["points_value"], t["amount_due"]) == ("50.00", "50.00", "0.00")


def test_another_members_coupon_is_not_owned(api):
    owner, other = member(api, 10), member(api, 10)
    code = coupon_for(api, owner, kind="amount_discount", value="10")
    before = (world(api, owner, [], [code]), world(api, other))
    assert_problem(buy(api, other, total="100.00", coupons=[code]), 409, "coupon_not_owned")
    assert (world(api, owner, [], [code]), world(api, other)) == before
    assert coupon(api, code)["status"] == "issued"


def test_a_used_coupon_cannot_be_used_again(api):
    m = member(api, 10)
    code = coupon_for(api, m, kind="amount_discount", value="10")
    fresh = coupon_for(api, m, kind="amount_discount", value="10")
    bought(api, m, total="100.00", coupons=[code])
    before = world(api, m, [], [code, fresh])
    assert_problem(buy(api, m, total="100.00", coupons=[code]), 409, "coupon_used")
    assert_problem(buy(api, m, total="100.00", coupons=[fresh, code]), 409, "coupon_used")
    assert world(api, m, [], [code, fresh]) == before
    assert coupon(api, fresh)["status"] == "issued"


def test_an_expired_coupon(api):
    m = member(api, 10)
    code = coupon_for(api, m, kind="amount_discount", value="10", valid_days=7)
    expires = is_time(coupon(api, code)["expires_at"])
    with clock.frozen(expires + timedelta(seconds=1)):
        c = coupon(api, code)
        assert (c["status"], c["used_at"], c["transaction_id"]) == ("expired", None, None)
        before = world(api, m, [], [code])
        assert_problem(buy(api, m, total="100.00", coupons=[code]), 409, "coupon_expired")
        assert world(api, m, [], [code]) == before
    with clock.frozen(expires - timedelta(seconds=1)):
        t = bought(api, m, total="100.00", coupons=[code])
        assert t["discount"] == "10.00"


def test_blocked_member_cannot_use_a_coupon(api):
    m = member(api, 10)
    code = coupon_for(api, m, kind="amount_discount", value="10")
    ok(api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent"), 200)
    before = world(api, m, [], [code])
    assert_problem(buy(api, m, total="100.00", coupons=[code]), 409, "member_blocked")
    assert world(api, m, [], [code]) == before


def test_unknown_coupon_is_404_and_changes_nothing(api):
    m = member(api, 10)
    before = world(api, m)
    assert_problem(buy(api, m, total="100.00", coupons=["AAAA-AAAA-AAAA"]), 404, "not_found")
    assert_problem(api.get("/v1/coupons/AAAA-AAAA-AAAA"), 404, "not_found")
    assert world(api, m) == before


def test_a_purchase_with_a_coupon_is_idempotent(api):
    m = member(api, 10)
    code = coupon_for(api, m, kind="percent_discount", value="10")
    body = {"external_id": "till-1", "member_id": m, "total": "200.00", "coupons": [code]}
    first = api.post("/v1/transactions", body, role="cashier")
    assert first.status_code == 201
    after = world(api, m, [], [code])
    again = api.post("/v1/transactions", body, role="cashier")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json() == first.json()
    assert_problem(
        api.post("/v1/transactions", {**body, "total": "300.00"}, role="cashier"), 409, "idempotency_conflict"
    )
    assert world(api, m, [], [code]) == after
    assert coupon(api, code)["transaction_id"] == first.json()["id"]


def test_a_claim_gives_a_coupon_that_works_at_the_till_end_to_end(api):
    spend_rule(api, 1, "1.00")
    m = member(api)
    bought(api, m, total="500.00")
    r = reward(api, kind="percent_discount", value="12.5", max_discount="100.00", cost_points=400, stock=1)
    c = ok(claim(api, m, r["id"], uid("c")))
    assert balance(api, m)["available"] == 100
    t = check_tx(bought(api, m, total="999.99", coupons=[c["code"]]))
    # 12.5 % of 999.99 = 124.99875, capped at 100.00; 899.99 left earns 899 points.
    assert (t["discount"], t["amount_due"], t["points_earned"]) == ("100.00", "899.99", 899)
    assert t["balance"]["available"] == 999
    assert coupon(api, c["code"])["status"] == "used"
    assert stock(api, r["id"]) == 0


def test_a_claim_spends_the_points_that_expire_first(api):
    ok(api.patch("/v1/program", {"expiry": {"policy": "after_days", "days": 30}}, role="marketer"), 200)
    spend_rule(api, 1, "1.00")
    m = member(api)
    t0 = clock.now()
    bought(api, m, total="100.00")
    with clock.frozen(t0 + timedelta(days=10)):
        bought(api, m, total="100.00")
        r = reward(api, cost_points=150)
        ok(claim(api, m, r["id"]))
        left = balance(api, m)
    assert left["available"] == 50
    assert [e["points"] for e in left["expiring"]] == [50]
    assert is_time(left["expiring"][0]["expires_at"]) > t0 + timedelta(days=39)


@pytest.mark.parametrize("how", ["card", "phone"])
def test_coupon_ownership_follows_the_member_found_by_card_or_phone(api, how):
    owner, other = member(api), member(api)
    code = coupon_for(api, owner, kind="amount_discount", value="10")
    card = ok(api.post(f"/v1/members/{owner}/cards", {"kind": "loyalty"}, role="cashier"))["number"]
    other_card = ok(api.post(f"/v1/members/{other}/cards", {"kind": "loyalty"}, role="cashier"))["number"]
    ref = {"card": card} if how == "card" else {"phone": get_member(api, owner)["phone"]}
    wrong = {"card": other_card} if how == "card" else {"phone": get_member(api, other)["phone"]}
    before = world(api, owner, [], [code])
    r = api.post(
        "/v1/transactions", {"external_id": uid("t"), **wrong, "total": "50.00", "coupons": [code]}, role="cashier"
    )
    assert_problem(r, 409, "coupon_not_owned")
    assert world(api, owner, [], [code]) == before
    r = api.post(
        "/v1/transactions", {"external_id": uid("t"), **ref, "total": "50.00", "coupons": [code]}, role="cashier"
    )
    t = check_tx(ok(r))
    assert (t["member_id"], t["discount"], t["amount_due"]) == (owner, "10.00", "40.00")
