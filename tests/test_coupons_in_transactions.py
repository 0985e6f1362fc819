"""Coupons used in POST /v1/transactions: API.md "Transactions" step 1, with the sums worked by hand."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from patron.ledger.verify import verify
from tests.helpers import assert_problem, state
from tests.test_rewards import claimed, coupon, give, member_with, points, reward


def coupon_for(api: Any, member_id: str, **terms: Any) -> str:
    terms.setdefault("cost_points", 0)
    return str(claimed(api, member_id, reward(api, **terms)["id"])["code"])


def buy(api: Any, member_id: str, coupons: list[str], external_id: str | None = None, **body: Any) -> Any:
    body = {"external_id": external_id or f"t-{uuid.uuid4()}", "member_id": member_id, "coupons": coupons, **body}
    return api.post("/v1/transactions", body, role="cashier")


def bought(api: Any, member_id: str, coupons: list[str], **body: Any) -> dict[str, Any]:
    r = buy(api, member_id, coupons, **body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def sums(t: dict[str, Any]) -> tuple[str, str, str]:
    return t["total"], t["discount"], t["amount_due"]


@pytest.mark.parametrize(
    ("total", "percent", "max_discount", "discount"),
    [
        ("10.10", "5", None, "0.51"),  # 0.505: half up, not to even
        ("10.30", "5", None, "0.52"),  # 0.515
        ("999.99", "12.5", None, "125.00"),  # 124.99875
        ("1234.56", "33.3333", None, "411.52"),  # 411.519588...
        ("1000.00", "50", "100.00", "100.00"),  # capped
        ("150.00", "50", "100.00", "75.00"),  # under the cap
        ("80.00", "100", None, "80.00"),
    ],
)
def test_percent_discount(api, total, percent, max_discount, discount):
    m = member_with(api, 0)
    terms = {"max_discount": max_discount} if max_discount else {}
    code = coupon_for(api, m, kind="percent_discount", value=percent, **terms)
    t = bought(api, m, [code], total=total)
    due = f"{float(total) - float(discount):.2f}"
    assert sums(t) == (total, discount, due)
    assert t["coupons"] == [{"code": code, "discount": discount}]


def test_amount_discount_is_capped_at_the_total(api):
    m = member_with(api, 0)
    small = coupon_for(api, m, kind="amount_discount", value="150")
    t = bought(api, m, [small], total="1000.00")
    assert sums(t) == ("1000.00", "150.00", "850.00")
    big = coupon_for(api, m, kind="amount_discount", value="500")
    t = bought(api, m, [big], total="300.00")
    assert sums(t) == ("300.00", "300.00", "0.00")
    assert t["coupons"] == [{"code": big, "discount": "300.00"}]
    assert coupon(api, big)["discount"] == "300.00"


def test_free_item(api):
    m = member_with(api, 0)
    oil = coupon_for(api, m, kind="free_item", sku="OIL")
    items = [
        {"sku": "FILTER", "quantity": "1", "unit_price": "300.00"},
        {"sku": "OIL", "quantity": "2", "unit_price": "450.00"},
    ]
    t = bought(api, m, [oil], items=items)
    assert sums(t) == ("1200.00", "450.00", "750.00")
    assert t["coupons"] == [{"code": oil, "discount": "450.00"}]

    # A fractional quantity frees what was bought; two coupons free two units, not a third.
    half = [{"sku": "OIL", "quantity": "0.5", "unit_price": "900.00"}]
    t = bought(api, m, [coupon_for(api, m, kind="free_item", sku="OIL")], items=half)
    assert sums(t) == ("450.00", "450.00", "0.00")
    two = [coupon_for(api, m, kind="free_item", sku="OIL") for _ in range(3)]
    t = bought(api, m, two[:2], items=[{"sku": "OIL", "quantity": "2", "unit_price": "100.00"}, *items[:1]])
    assert sums(t) == ("500.00", "200.00", "300.00")
    r = buy(api, m, two[1:], items=[{"sku": "OIL", "quantity": "2", "unit_price": "100.00"}])
    assert_problem(r, 409, "coupon_used")
    t = bought(api, m, [two[2]], items=[{"sku": "OIL", "quantity": "1", "unit_price": "1"}, *items[:1]])
    assert sums(t) == ("301.00", "1.00", "300.00")
    absent = coupon_for(api, m, kind="free_item", sku="WASH")
    before = state(api)
    assert_problem(buy(api, m, [absent], items=items), 409, "coupon_not_applicable")
    assert_problem(buy(api, m, [absent], total="1000.00"), 409, "coupon_not_applicable")
    assert state(api) == before
    assert coupon(api, absent)["status"] == "issued"


def test_gift_and_privilege_are_used_with_no_discount(api):
    m = member_with(api, 0)
    gift = coupon_for(api, m, kind="gift")
    privilege = coupon_for(api, m, kind="privilege")
    t = bought(api, m, [gift, privilege], total="500.00")
    assert sums(t) == ("500.00", "0.00", "500.00")
    assert t["coupons"] == [{"code": gift, "discount": "0.00"}, {"code": privilege, "discount": "0.00"}]
    for code in (gift, privilege):
        c = coupon(api, code)
        assert (c["status"], c["transaction_id"], c["discount"]) == ("used", t["id"], "0.00")
        assert c["used_at"] is not None


def test_several_coupons_never_take_more_than_the_total(api):
    m = member_with(api, 0)
    first = coupon_for(api, m, kind="amount_discount", value="800")
    second = coupon_for(api, m, kind="percent_discount", value="50")
    third = coupon_for(api, m, kind="amount_discount", value="10")
    t = bought(api, m, [first, second, third], total="1000.00")
    assert sums(t) == ("1000.00", "1000.00", "0.00")
    assert t["coupons"] == [
        {"code": first, "discount": "800.00"},
        {"code": second, "discount": "200.00"},
        {"code": third, "discount": "0.00"},
    ]


def test_discount_then_points_then_earning_and_a_return(api):
    api.post("/v1/earning-rules", {"name": "1 per 10", "kind": "spend", "points": 1, "per_amount": "10.00"})
    m = member_with(api, 100)
    code = coupon_for(api, m, kind="amount_discount", value="200")
    items = [
        {"sku": "A", "quantity": "1", "unit_price": "600.00"},
        {"sku": "B", "quantity": "1", "unit_price": "400.00"},
    ]
    t = bought(api, m, [code], items=items, redeem_points=100)
    assert sums(t) == ("1000.00", "200.00", "700.00")
    assert (t["points_redeemed"], t["points_value"], t["points_earned"]) == (100, "100.00", 70)
    assert t["balance"] == {"available": 70, "pending": 0}
    assert api.get(f"/v1/transactions/{t['id']}").json() == t
    # Returning B gives back its share of the net: 400 of 1000 gross carried 120 of discount and points.
    r = api.post(f"/v1/transactions/{t['id']}/returns", {"external_id": "ret", "items": [{"sku": "B", "quantity": 1}]})
    assert r.status_code == 201, r.text
    assert (r.json()["points_reversed"], r.json()["points_restored"]) == (28, 40)
    c = coupon(api, code)
    assert (c["status"], c["transaction_id"], c["discount"]) == ("used", t["id"], "200.00")
    checked, mismatches = api.db.read(verify)
    assert (mismatches, checked > 0) == ([], True)


def test_refusals(api):
    m = member_with(api, 0)
    other = member_with(api, 0)
    mine = coupon_for(api, m, kind="amount_discount", value="10")
    theirs = coupon_for(api, other, kind="amount_discount", value="10")
    used = coupon_for(api, m, kind="amount_discount", value="10")
    bought(api, m, [used], total="100.00")
    before = state(api)
    assert_problem(buy(api, m, [theirs], total="100.00"), 409, "coupon_not_owned")
    assert_problem(buy(api, m, [mine, used], total="100.00"), 409, "coupon_used")
    assert_problem(buy(api, m, ["AAAA-AAAA-AAAA"], total="100.00"), 404, "not_found")
    assert_problem(buy(api, m, ["no such thing"], total="100.00"), 404, "not_found")
    dup = [mine, mine.lower().replace("-", "")]
    assert_problem(buy(api, m, dup, total="100.00"), 422, "validation_error", field="coupons.1")
    assert state(api) == before
    assert coupon(api, mine)["status"] == "issued"


def test_a_refused_purchase_leaves_the_coupon_issued(api):
    m = member_with(api, 50)
    code = coupon_for(api, m, kind="percent_discount", value="10")
    before = state(api)
    assert_problem(buy(api, m, [code], total="100.00", redeem_points=51), 409, "insufficient_points")
    assert state(api) == before
    # 90.00 is left to pay after the coupon: 91 points would pay more than that.
    give(api, m, 100)
    before = state(api)
    assert_problem(buy(api, m, [code], total="100.00", redeem_points=91), 422, "validation_error")
    assert state(api) == before
    c = coupon(api, code)
    assert (c["status"], c["used_at"], c["transaction_id"]) == ("issued", None, None)
    t = bought(api, m, [code], total="100.00", redeem_points=90)
    assert sums(t) == ("100.00", "10.00", "0.00")
    assert points(api, m)["available"] == 60


def test_replay_does_not_use_the_coupon_twice(api):
    m = member_with(api, 0)
    code = coupon_for(api, m, kind="amount_discount", value="25")
    first = buy(api, m, [code], external_id="once", total="100.00")
    assert first.status_code == 201
    before = state(api)
    again = buy(api, m, [code], external_id="once", total="100.00")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == first.json()
    assert state(api) == before
    assert coupon(api, code)["transaction_id"] == first.json()["id"]
    assert_problem(buy(api, m, [code], external_id="twice", total="100.00"), 409, "coupon_used")


def test_blocked_member_cannot_use_a_coupon(api):
    m = member_with(api, 0)
    code = coupon_for(api, m, kind="amount_discount", value="25")
    api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent")
    before = state(api)
    assert_problem(buy(api, m, [code], total="100.00"), 409, "member_blocked")
    assert state(api) == before
