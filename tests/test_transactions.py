"""POST /v1/transactions and returns through the API, with the arithmetic of API.md worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from patron.kit import clock
from patron.ledger.verify import verify
from tests.helpers import assert_problem, counts, state

ANSWER_KEYS = {
    # API.md "Transactions"
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
    # added by Patron
    "occurred_at",
    "location",
    "channel",
}


# Small helpers ----------------------------------------------------------------------------------


def rule(api: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("name", body["kind"])
    r = api.post("/v1/earning-rules", body, role="marketer")
    assert r.status_code == 201, r.text
    return dict(r.json())


def spend_rule(api: Any, points: int = 1, per_amount: str = "10.00", **more: Any) -> dict[str, Any]:
    return rule(api, kind="spend", points=points, per_amount=per_amount, **more)


def program(api: Any, **fields: Any) -> None:
    r = api.patch("/v1/program", fields, role="admin")
    assert r.status_code == 200, r.text


def buy(api: Any, member_id: str | None, external_id: str, role: str = "cashier", **body: Any) -> Any:
    if member_id is not None:
        body["member_id"] = member_id
    return api.post("/v1/transactions", {"external_id": external_id, **body}, role=role)


def bought(api: Any, member_id: str, external_id: str, **body: Any) -> dict[str, Any]:
    r = buy(api, member_id, external_id, **body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def give(api: Any, member_id: str, points: int, external_id: str = "seed") -> None:
    r = api.post(
        f"/v1/members/{member_id}/points/adjustments",
        {"external_id": external_id, "points": points, "reason": "test seed"},
        role="agent",
    )
    assert r.status_code == 201, r.text


def points(api: Any, member_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/members/{member_id}/points", role="cashier")
    assert r.status_code == 200, r.text
    return dict(r.json())


def ledger(api: Any, member_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/members/{member_id}/ledger?limit=500", role="cashier")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def give_back(api: Any, transaction_id: str, external_id: str, **body: Any) -> Any:
    return api.post(f"/v1/transactions/{transaction_id}/returns", {"external_id": external_id, **body}, role="cashier")


def run_job(api: Any, name: str, as_of: datetime) -> dict[str, Any]:
    r = api.post(f"/v1/jobs/{name}/run", {"as_of": as_of.isoformat()}, role="admin")
    assert r.status_code == 200, r.text
    return dict(r.json()["result"])


def assert_ledger_consistent(api: Any) -> None:
    checked, mismatches = api.db.read(verify)
    assert checked > 0
    assert mismatches == []


def iso(at: datetime) -> str:
    return at.isoformat()


def now() -> datetime:
    return datetime.now(UTC)


OIL_ITEMS = [
    {"sku": "OIL-5W30", "name": "Oil 5W-30 4l", "category": "oil", "quantity": "2", "unit_price": "750.00"},
    {"sku": "FILTER", "category": "filters", "quantity": "1", "unit_price": "500.00"},
]


# Identification ---------------------------------------------------------------------------------


def test_identified_by_member_id_card_or_phone(api):
    spend_rule(api)
    m = api.enrol(phone="+79161234567")
    card = api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}, role="cashier").json()["number"]
    by_id = bought(api, m["id"], "t-id", total="100.00")
    by_card = bought(api, None, "t-card", card=card, total="100.00")
    by_phone = bought(api, None, "t-phone", phone="8 (916) 123-45-67", total="100.00")
    assert by_id["member_id"] == by_card["member_id"] == by_phone["member_id"] == m["id"]
    # 100.00 / 10.00 × 1 = 10 each time
    assert [t["balance"]["available"] for t in (by_id, by_card, by_phone)] == [10, 20, 30]
    assert_ledger_consistent(api)


def test_exactly_one_identifier_or_422(api, subtests):
    spend_rule(api)
    m = api.enrol(phone="+79161234567")
    card = api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}, role="cashier").json()["number"]
    phone = "+79161234567"
    before = state(api)
    for who in (
        {},
        {"card": card, "phone": phone},
        {"member_id": m["id"], "card": card},
        {"member_id": m["id"], "phone": phone},
        {"member_id": m["id"], "card": card, "phone": phone},
    ):
        with subtests.test(msg=", ".join(who) or "none"):
            r = api.post("/v1/transactions", {"external_id": "t1", "total": "100.00", **who}, role="cashier")
            assert_problem(r, 422, "validation_error", field="member_id")
    assert state(api) == before


def test_unknown_member_or_card_is_404(api):
    before = state(api)
    assert_problem(buy(api, "01a20885-0000-7000-8000-000000000000", "t1", total="1.00"), 404, "not_found")
    assert_problem(buy(api, None, "t2", card="4000000000000002", total="1.00"), 404, "not_found")
    assert state(api) == before


def test_blocked_member_cannot_earn_or_redeem(api):
    spend_rule(api)
    m = api.enrol()
    give(api, m["id"], 50)
    card = api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}, role="cashier").json()["number"]
    r = api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"}, role="agent")
    assert r.status_code == 200, r.text
    before = state(api)
    assert_problem(buy(api, m["id"], "t1", total="100.00"), 409, "member_blocked")
    assert_problem(buy(api, None, "t2", card=card, total="100.00", redeem_points=10), 409, "member_blocked")
    assert state(api) == before
    api.post(f"/v1/members/{m['id']}/unblock", role="agent")
    assert bought(api, m["id"], "t1", total="100.00")["balance"] == {"available": 60, "pending": 0}
    assert_ledger_consistent(api)


def test_blocked_card_is_refused_but_the_member_can_still_buy(api):
    spend_rule(api)
    m = api.enrol()
    card = api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}, role="cashier").json()["number"]
    r = api.post(f"/v1/cards/{card}/block", {"reason": "lost"}, role="cashier")
    assert r.status_code == 200, r.text
    before = state(api)
    assert_problem(buy(api, None, "t1", card=card, total="100.00"), 409, "card_blocked")
    assert state(api) == before
    assert bought(api, m["id"], "t1", total="100.00")["points_earned"] == 10


# Items and total --------------------------------------------------------------------------------


def test_items_make_the_total(api):
    m = api.enrol()
    t = bought(api, m["id"], "t1", items=OIL_ITEMS)
    # 2 × 750.00 + 1 × 500.00
    assert t["total"] == "2000.00"
    assert t["amount_due"] == "2000.00"
    # a matching total is accepted, in any decimal spelling
    assert bought(api, m["id"], "t2", items=OIL_ITEMS, total="2000")["total"] == "2000.00"


def test_total_must_equal_the_items(api):
    m = api.enrol()
    before = state(api)
    r = buy(api, m["id"], "t1", items=OIL_ITEMS, total="1999.99")
    assert_problem(r, 422, "validation_error", field="total")
    r = buy(api, m["id"], "t1", items=OIL_ITEMS, total="2000.01")
    assert_problem(r, 422, "validation_error", field="total")
    assert state(api) == before


def test_neither_items_nor_total_is_422(api):
    m = api.enrol()
    before = state(api)
    assert_problem(buy(api, m["id"], "t1"), 422, "validation_error", field="total")
    assert_problem(buy(api, m["id"], "t1", items=[]), 422, "validation_error", field="items")
    assert state(api) == before


def test_bad_items_are_422(api):
    m = api.enrol()
    before = state(api)
    bad = [
        [{"sku": "A", "quantity": "0", "unit_price": "1.00"}],
        [{"sku": "A", "quantity": "1", "unit_price": "-1.00"}],
        [{"sku": "A", "quantity": "1", "unit_price": "1.001"}],
        [{"sku": "A", "quantity": "1"}],
    ]
    for items in bad:
        assert_problem(buy(api, m["id"], "t1", items=items), 422, "validation_error")
    assert_problem(buy(api, m["id"], "t1", total="-5.00"), 422, "validation_error")
    assert state(api) == before


# Earning, redeeming and the answer --------------------------------------------------------------


def test_answer_has_the_exact_shape_and_arithmetic(api):
    program(api, point_value="0.50")
    spend = spend_rule(api, points=1, per_amount="100.00", name="base")
    oil = rule(api, kind="category", name="oil", category="oil", points=5, per_amount="100.00")
    m = api.enrol()
    give(api, m["id"], 1000)
    r = buy(api, m["id"], "t1", items=OIL_ITEMS, redeem_points=200, location="MSK-01")
    assert r.status_code == 201, r.text
    t = r.json()
    assert set(t) == ANSWER_KEYS
    # 200 points × 0.50 = 100.00; due 2000.00 − 100.00 = 1900.00
    # spread of 100.00 over 1500.00 / 500.00: 75.00 / 25.00 → nets 1425.00 / 475.00
    # base: floor(1900.00 / 100.00) × 1 = 19; oil: floor(1425.00 / 100.00) × 5 = 70 → 89
    assert t["external_id"] == "t1"
    assert t["member_id"] == m["id"]
    assert t["total"] == "2000.00"
    assert t["discount"] == "0.00"
    assert t["points_redeemed"] == 200
    assert t["points_value"] == "100.00"
    assert t["amount_due"] == "1900.00"
    assert t["points_earned"] == 89
    assert t["breakdown"] == [
        {"rule_id": spend["id"], "rule_name": "base", "points": 19},
        {"rule_id": oil["id"], "rule_name": "oil", "points": 70},
    ]
    # 1000 − 200 + 89
    assert t["balance"] == {"available": 889, "pending": 0}
    assert t["tier"] == {"code": "member", "name": "Member"}
    assert t["coupons"] == []
    assert t["location"] == "MSK-01"
    assert t["channel"] == "pos"
    # GET gives the same answer back, to any role that reads members
    got = api.get(f"/v1/transactions/{t['id']}", role="cashier")
    assert got.status_code == 200
    assert got.json() == t
    entries = ledger(api, m["id"])
    assert [(e["kind"], e["points"], e["balance_after"], e["transaction_id"]) for e in entries] == [
        ("earn", 89, 889, t["id"]),
        ("redeem", -200, 800, t["id"]),
        ("adjust", 1000, 1000, None),
    ]
    p = points(api, m["id"])
    assert (p["available"], p["pending"], p["lifetime_earned"], p["redeemed"], p["expired"]) == (889, 0, 89, 200, 0)
    assert_ledger_consistent(api)


def test_get_unknown_transaction_is_404(api):
    assert_problem(api.get("/v1/transactions/01a20885-0000-7000-8000-000000000000"), 404, "not_found")


def test_multipliers_and_fixed_bonuses_through_the_api(api):
    spend_rule(api, points=1, per_amount="100.00", name="base")
    rule(api, kind="category", name="oil", category="oil", points=5, per_amount="100.00")
    rule(api, kind="multiplier", name="oil ×1.5", category="oil", factor="1.5")
    rule(api, kind="multiplier", name="double", factor="2")
    rule(api, kind="sku", name="filter bonus", sku="FILTER", points=10)
    rule(api, kind="visit", name="visit", points=25)
    m = api.enrol()
    t = bought(api, m["id"], "t1", items=OIL_ITEMS)
    # step 4: base floor(2000 / 100) = 20; oil floor(1500 / 100) × 5 = 75 → 95
    # step 5: P on the oil line: base 15 + oil 75 = 90 → +floor(90 × 0.5) = 45 → 140; × 2 → 280 (double adds 140)
    # step 6: 1 filter × 10 = 10, visit 25 → 315
    assert {b["rule_name"]: b["points"] for b in t["breakdown"]} == {
        "base": 20,
        "oil": 75,
        "oil ×1.5": 45,
        "double": 140,
        "filter bonus": 10,
        "visit": 25,
    }
    assert t["points_earned"] == 315
    assert t["balance"]["available"] == 315


def ladder(api: Any, *tiers: tuple[str, int, str]) -> None:
    body = {
        "metric": "points",
        "tiers": [{"code": c, "name": c.title(), "threshold": t, "multiplier": m} for c, t, m in tiers],
    }
    r = api.put("/v1/tiers", body, role="marketer")
    assert r.status_code == 200, r.text


def test_tier_multiplier_multiplies_the_running_sum(api):
    spend_rule(api, points=1, per_amount="10.00", name="base")
    ladder(api, ("member", 0, "1.25"))
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="1234.56")
    # floor(1234.56 / 10) = 123; floor(123 × 1.25) = floor(153.75) = 153
    assert t["points_earned"] == 153
    assert t["breakdown"][1] == {"rule_id": None, "rule_name": "Tier Member ×1.25", "points": 30}


def test_an_upgrade_the_purchase_earns_is_in_its_answer(api):
    spend_rule(api, points=1, per_amount="10.00", name="base")
    ladder(api, ("member", 0, "1"), ("silver", 100, "1.5"))
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="990.00")
    # 99 points: not yet silver
    assert (t["points_earned"], t["tier"]) == (99, {"code": "member", "name": "Member"})
    t = bought(api, m["id"], "t2", total="10.00")
    # 1 more makes 100: silver, in this answer already; this purchase still earned at the old tier
    assert (t["points_earned"], t["tier"]) == (1, {"code": "silver", "name": "Silver"})
    t = bought(api, m["id"], "t3", total="100.00")
    # floor(10 × 1.5) = 15
    assert (t["points_earned"], t["tier"]["code"]) == (15, "silver")


def test_inactive_and_conditional_rules(api):
    spend_rule(api, points=1, per_amount="10.00", name="base")
    rule(api, kind="visit", name="off", points=1000, active=False)
    rule(api, kind="visit", name="web only", points=7, conditions={"channels": ["web"]})
    rule(api, kind="visit", name="big baskets", points=9, conditions={"min_total": "500.00"})
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="499.99")
    assert [b["rule_name"] for b in t["breakdown"]] == ["base"]
    assert t["points_earned"] == 49
    t = bought(api, m["id"], "t2", total="500.00", channel="web")
    # 50 + 7 + 9
    assert t["points_earned"] == 66


def test_weekday_rule_uses_the_programme_time_zone(api):
    rule(api, kind="visit", name="monday", points=5, conditions={"weekdays": [1]})
    m = api.enrol()
    # the most recent Sunday 23:30 UTC before now, which is Monday 02:30 in Moscow
    n = now()
    sunday = (n - timedelta(days=(n.isoweekday() % 7) or 7)).replace(hour=23, minute=30, second=0, microsecond=0)
    if sunday > n:
        sunday -= timedelta(days=7)
    assert sunday.isoweekday() == 7
    assert bought(api, m["id"], "t1", total="1.00", occurred_at=iso(sunday))["points_earned"] == 5
    saturday = sunday - timedelta(days=1)
    assert bought(api, m["id"], "t2", total="1.00", occurred_at=iso(saturday))["points_earned"] == 0


def test_redeeming_down_to_zero_due(api):
    program(api, point_value="0.50")
    spend_rule(api)
    rule(api, kind="visit", name="visit", points=3)
    m = api.enrol()
    give(api, m["id"], 300)
    # 200 × 0.50 = 100.00 = the total: nothing to pay, the spend rule gives nothing, the visit does
    t = bought(api, m["id"], "t1", total="100.00", redeem_points=200)
    assert (t["points_value"], t["amount_due"], t["points_earned"]) == ("100.00", "0.00", 3)
    assert t["balance"] == {"available": 103, "pending": 0}
    assert_ledger_consistent(api)


def test_points_worth_more_than_the_total_is_422_and_changes_nothing(api):
    program(api, point_value="0.50")
    m = api.enrol()
    give(api, m["id"], 1000)
    before = state(api)
    # 201 × 0.50 = 100.50 > 100.00
    r = buy(api, m["id"], "t1", total="100.00", redeem_points=201)
    assert_problem(r, 422, "validation_error", field="redeem_points")
    assert state(api) == before


def test_redeeming_more_than_available_is_409_and_changes_nothing(api):
    spend_rule(api)
    m = api.enrol()
    give(api, m["id"], 100)
    before = state(api)
    n_before = counts(api.db)["transactions"]
    r = buy(api, m["id"], "t1", total="1000.00", redeem_points=101)
    assert_problem(r, 409, "insufficient_points")
    assert state(api) == before
    assert counts(api.db)["transactions"] == n_before == 0
    assert points(api, m["id"])["available"] == 100
    # the refusal was not remembered: the same external_id is judged afresh once the points are there
    give(api, m["id"], 1, external_id="more")
    t = bought(api, m["id"], "t1", total="1000.00", redeem_points=101)
    # 101 + 0 left; due 899.00 → 89 earned
    assert t["balance"] == {"available": 89, "pending": 0}
    assert_ledger_consistent(api)


# Idempotency ------------------------------------------------------------------------------------


def test_same_external_id_and_body_replays_the_first_answer(api):
    spend_rule(api)
    m = api.enrol()
    give(api, m["id"], 50)
    body = {"items": OIL_ITEMS, "redeem_points": 20}
    first = buy(api, m["id"], "t1", **body)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    after_first = state(api)
    again = buy(api, m["id"], "t1", **body)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert state(api) == after_first
    # 50 − 20 + floor(1980.00 / 10.00) = 228, once
    assert points(api, m["id"])["available"] == 228


def test_same_external_id_with_another_body_is_409(api):
    spend_rule(api)
    m = api.enrol()
    first = bought(api, m["id"], "t1", total="100.00")
    before = state(api)
    for other in ({"total": "100.01"}, {"total": "100.00", "channel": "web"}, {"total": "100.00", "location": "X"}):
        assert_problem(buy(api, m["id"], "t1", **other), 409, "idempotency_conflict")
    other_member = api.enrol()
    assert_problem(buy(api, other_member["id"], "t1", total="100.00"), 409, "idempotency_conflict")
    # (enrolling the other member changed the database; compare the points side only)
    assert points(api, m["id"])["available"] == first["balance"]["available"] == 10
    assert len([e for e in ledger(api, m["id"]) if e["kind"] == "earn"]) == 1
    assert counts(api.db)["transactions"] == 1
    assert state(api)["ledger_entries"] == before["ledger_entries"]


# Pending points ---------------------------------------------------------------------------------


def test_pending_points_wait_for_release_pending(api):
    program(api, pending_days=14)
    spend_rule(api)
    m = api.enrol()
    occurred = now() - timedelta(days=2)
    t = bought(api, m["id"], "t1", total="300.00", occurred_at=iso(occurred))
    # 30 points held until occurred_at + 14 days
    assert t["points_earned"] == 30
    assert t["balance"] == {"available": 0, "pending": 30}
    assert (points(api, m["id"])["available"], points(api, m["id"])["pending"]) == (0, 30)
    # pending points cannot be spent
    before = state(api)
    r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r1", "points": 1}, role="agent")
    assert_problem(r, 409, "insufficient_points")
    assert_problem(buy(api, m["id"], "t2", total="100.00", redeem_points=1), 409, "insufficient_points")
    assert state(api) == before
    release = occurred + timedelta(days=14)
    assert run_job(api, "release-pending", release - timedelta(seconds=1)) == {"members": 0, "points": 0}
    assert points(api, m["id"])["pending"] == 30
    assert run_job(api, "release-pending", release) == {"members": 1, "points": 30}
    p = points(api, m["id"])
    assert (p["available"], p["pending"], p["lifetime_earned"]) == (30, 0, 30)
    # running it again finds nothing
    assert run_job(api, "release-pending", release + timedelta(days=1)) == {"members": 0, "points": 0}
    assert api.get(f"/v1/members/{m['id']}", role="cashier").json()["points"] == {"available": 30, "pending": 0}
    assert_ledger_consistent(api)


def test_a_purchase_recorded_after_its_hold_is_spendable_at_once(api):
    program(api, pending_days=7)
    spend_rule(api)
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="300.00", occurred_at=iso(now() - timedelta(days=8)))
    assert t["balance"] == {"available": 30, "pending": 0}


# Expiry -----------------------------------------------------------------------------------------


def test_after_days_expiry(api):
    program(api, expiry={"policy": "after_days", "days": 30})
    spend_rule(api)
    m = api.enrol()
    occurred = now().replace(microsecond=0) - timedelta(days=40)
    t = bought(api, m["id"], "t1", total="420.00", occurred_at=iso(occurred))
    expires = occurred + timedelta(days=30)
    (earn,) = ledger(api, m["id"])
    assert earn["kind"] == "earn"
    assert datetime.fromisoformat(earn["expires_at"]) == expires
    p = points(api, m["id"])
    assert p["available"] == 42
    assert [(x["points"], datetime.fromisoformat(x["expires_at"])) for x in p["expiring"]] == [(42, expires)]
    assert run_job(api, "expire-points", expires - timedelta(seconds=1)) == {"members": 0, "points": 0}
    assert points(api, m["id"])["available"] == 42
    assert run_job(api, "expire-points", expires) == {"members": 1, "points": 42}
    p = points(api, m["id"])
    assert (p["available"], p["expired"], p["lifetime_earned"], p["expiring"]) == (0, 42, 42, [])
    top = ledger(api, m["id"])[0]
    assert (top["kind"], top["points"], top["balance_after"]) == ("expire", -42, 0)
    assert run_job(api, "expire-points", expires + timedelta(days=1)) == {"members": 0, "points": 0}
    assert t["points_earned"] == 42
    assert_ledger_consistent(api)


def test_end_of_year_expiry_is_in_the_programme_time_zone(api):
    program(api, expiry={"policy": "end_of_year"})
    spend_rule(api)
    m = api.enrol()
    with clock.frozen(datetime(2027, 1, 10, 9, 0, tzinfo=UTC)):
        # 22:30 UTC on 31 December 2026 is 01:30 on 1 January 2027 in Moscow: a 2027 purchase
        late = bought(api, m["id"], "t1", total="100.00", occurred_at="2026-12-31T22:30:00+00:00")
        # 20:30 UTC is 23:30 in Moscow: still 2026
        early = bought(api, m["id"], "t2", total="50.00", occurred_at="2026-12-31T20:30:00+00:00")
        assert (late["points_earned"], early["points_earned"]) == (10, 5)
        by_txn = {e["transaction_id"]: e["expires_at"] for e in ledger(api, m["id"])}
        # the end of 2027 in Moscow is 2027-12-31T21:00Z; the end of 2026 there is 2026-12-31T21:00Z
        assert datetime.fromisoformat(by_txn[late["id"]]) == datetime(2027, 12, 31, 21, 0, tzinfo=UTC)
        assert datetime.fromisoformat(by_txn[early["id"]]) == datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
        assert run_job(api, "expire-points", datetime(2027, 1, 10, 9, 0, tzinfo=UTC)) == {"members": 1, "points": 5}
        assert points(api, m["id"])["available"] == 10
        assert run_job(api, "expire-points", datetime(2027, 12, 31, 20, 59, 59, tzinfo=UTC))["points"] == 0
        assert run_job(api, "expire-points", datetime(2027, 12, 31, 21, 0, tzinfo=UTC))["points"] == 10
        p = points(api, m["id"])
        assert (p["available"], p["expired"]) == (0, 15)
        assert_ledger_consistent(api)


def test_spending_takes_the_points_that_expire_first(api):
    program(api, expiry={"policy": "after_days", "days": 30})
    spend_rule(api, points=1, per_amount="1.00")
    m = api.enrol()
    n = now().replace(microsecond=0)
    soon = bought(api, m["id"], "t-soon", total="100.00", occurred_at=iso(n - timedelta(days=25)))
    later = bought(api, m["id"], "t-later", total="50.00", occurred_at=iso(n - timedelta(days=5)))
    assert later["balance"]["available"] == 150
    r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r1", "points": 80}, role="agent")
    assert r.status_code == 201, r.text
    # 80 came out of the 100 expiring in 5 days: 20 of them are left there, all 50 of the later lot
    expiring = [x["points"] for x in points(api, m["id"])["expiring"]]
    assert expiring == [20, 50]
    assert run_job(api, "expire-points", n + timedelta(days=6)) == {"members": 1, "points": 20}
    assert points(api, m["id"])["available"] == 50
    assert run_job(api, "expire-points", n + timedelta(days=26)) == {"members": 1, "points": 50}
    p = points(api, m["id"])
    assert (p["available"], p["expired"], p["redeemed"]) == (0, 70, 80)
    assert soon["points_earned"] == 100
    assert_ledger_consistent(api)


def test_a_purchase_paid_with_points_spends_the_soonest_expiring(api):
    program(api, expiry={"policy": "after_days", "days": 30})
    spend_rule(api, points=1, per_amount="1.00")
    m = api.enrol()
    n = now().replace(microsecond=0)
    bought(api, m["id"], "t1", total="40.00", occurred_at=iso(n - timedelta(days=5)))
    bought(api, m["id"], "t2", total="60.00", occurred_at=iso(n - timedelta(days=20)))
    # pays 50 points: all 60 expiring in 10 days? no — 50 of them; the 40 expiring in 25 days stay
    t = bought(api, m["id"], "t3", total="50.00", redeem_points=50)
    assert t["amount_due"] == "0.00"
    assert [x["points"] for x in points(api, m["id"])["expiring"]] == [10, 40]
    assert run_job(api, "expire-points", n + timedelta(days=11))["points"] == 10
    assert points(api, m["id"])["available"] == 40
    assert_ledger_consistent(api)


# Returns ----------------------------------------------------------------------------------------

RETURN_ITEMS = [
    {"sku": "A", "quantity": "2", "unit_price": "300.00"},
    {"sku": "B", "quantity": "1", "unit_price": "400.00"},
]


def returnable(api: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A member with 100 points who buys 1000.00, pays 100 points and earns 90."""
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    give(api, m["id"], 100)
    t = bought(api, m["id"], "t1", items=RETURN_ITEMS, redeem_points=100)
    # 100 points × 1.00 = 100.00 spread 60.00 / 40.00 → nets A 540.00 (two units), B 360.00
    # earned floor(900.00 / 10.00) = 90; balance 100 − 100 + 90 = 90
    assert (t["amount_due"], t["points_earned"], t["balance"]["available"]) == ("900.00", 90, 90)
    return m, t


def test_returns_by_items_reverse_and_restore_pro_rata(api):
    m, t = returnable(api)
    r = give_back(api, t["id"], "r1", items=[{"sku": "A", "quantity": "1"}])
    assert r.status_code == 201, r.text
    out = r.json()
    # share 270.00 / 900.00 = 0.3: reversed 90 × 0.3 = 27, restored 100 × 0.3 = 30
    assert (out["points_reversed"], out["points_restored"]) == (27, 30)
    assert out["balance"] == {"available": 93, "pending": 0}
    assert out["transaction_id"] == t["id"]
    out = give_back(api, t["id"], "r2", items=[{"sku": "B", "quantity": "1"}]).json()
    # share so far (270 + 360) / 900 = 0.7: 63 reversed and 70 restored in all → 36 and 40 now
    assert (out["points_reversed"], out["points_restored"]) == (36, 40)
    out = give_back(api, t["id"], "r3", items=[{"sku": "A", "quantity": "1"}]).json()
    # the whole transaction: exactly 90 reversed and 100 restored in all
    assert (out["points_reversed"], out["points_restored"]) == (27, 30)
    assert out["balance"] == {"available": 100, "pending": 0}
    kinds = [(e["kind"], e["points"]) for e in ledger(api, m["id"])][:6]
    assert kinds == [
        ("restore", 30),
        ("reverse", -27),
        ("restore", 40),
        ("reverse", -36),
        ("restore", 30),
        ("reverse", -27),
    ]
    p = points(api, m["id"])
    assert (p["lifetime_earned"], p["redeemed"]) == (0, 0)
    # nothing left to return
    before = state(api)
    r = give_back(api, t["id"], "r4", items=[{"sku": "A", "quantity": "1"}])
    assert_problem(r, 422, "validation_error")
    assert state(api) == before
    assert_ledger_consistent(api)


def test_return_by_amount_is_pro_rata_of_the_net(api):
    m, t = returnable(api)
    out = give_back(api, t["id"], "r1", amount="450.00").json()
    # 450.00 / 900.00 = 0.5: 45 reversed, 50 restored
    assert (out["points_reversed"], out["points_restored"]) == (45, 50)
    assert out["balance"] == {"available": 95, "pending": 0}
    before = state(api)
    # 450.01 more would be more than the net paid
    assert_problem(give_back(api, t["id"], "r2", amount="450.01"), 422, "validation_error", field="amount")
    assert state(api) == before
    out = give_back(api, t["id"], "r2", amount="450.00").json()
    assert (out["points_reversed"], out["points_restored"]) == (45, 50)
    assert out["balance"]["available"] == 100
    assert_ledger_consistent(api)


def test_return_rounds_half_up_and_never_takes_more_than_earned(api):
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    give(api, m["id"], 5)
    t = bought(api, m["id"], "t1", total="55.00", redeem_points=5)
    # due 50.00 → 5 points earned; 5 redeemed
    assert (t["points_earned"], t["points_redeemed"]) == (5, 5)
    out = give_back(api, t["id"], "r1", amount="25.00").json()
    # 5 × 0.5 = 2.5 → 3 (half up)
    assert (out["points_reversed"], out["points_restored"]) == (3, 3)
    out = give_back(api, t["id"], "r2", amount="25.00").json()
    # 5 × 1 = 5 in all, so 2 now, not another 3
    assert (out["points_reversed"], out["points_restored"]) == (2, 2)
    assert points(api, m["id"])["available"] == 5
    assert_ledger_consistent(api)


def test_a_return_in_three_thirds_reverses_exactly_what_was_earned(api):
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="100.00")
    assert t["points_earned"] == 10
    got = [
        give_back(api, t["id"], f"r{i}", amount=a).json()["points_reversed"]
        for i, a in enumerate(["33.33", "33.33", "33.34"])
    ]
    # cumulative shares 0.3333, 0.6666, 1 → 3, 7, 10 reversed in all: 3, 4, 3
    assert got == [3, 4, 3]
    assert points(api, m["id"])["available"] == 0
    assert_ledger_consistent(api)


def test_mixed_item_and_amount_returns_cannot_exceed_the_transaction(api):
    m, t = returnable(api)
    assert give_back(api, t["id"], "r1", items=[{"sku": "B", "quantity": "1"}]).status_code == 201
    before = state(api)
    # B's 360.00 is back; 540.01 more is too much
    assert_problem(give_back(api, t["id"], "r2", amount="540.01"), 422, "validation_error")
    assert_problem(give_back(api, t["id"], "r2", items=[{"sku": "A", "quantity": "3"}]), 422, "validation_error")
    assert_problem(give_back(api, t["id"], "r2", items=[{"sku": "Z", "quantity": "1"}]), 422, "validation_error")
    assert state(api) == before
    out = give_back(api, t["id"], "r2", amount="540.00").json()
    assert out["balance"]["available"] == 100
    assert_ledger_consistent(api)


def test_return_needs_items_or_amount(api):
    m, t = returnable(api)
    before = state(api)
    assert_problem(give_back(api, t["id"], "r1"), 422, "validation_error")
    assert_problem(
        give_back(api, t["id"], "r1", amount="1.00", items=[{"sku": "A", "quantity": "1"}]), 422, "validation_error"
    )
    assert_problem(give_back(api, t["id"], "r1", amount="0"), 422, "validation_error")
    assert_problem(give_back(api, t["id"], "r1", items=[{"sku": "A", "quantity": "0"}]), 422, "validation_error")
    assert_problem(give_back(api, "01a20885-0000-7000-8000-000000000000", "r1", amount="1.00"), 404, "not_found")
    assert state(api) == before


def test_a_return_may_leave_the_balance_negative_and_blocks_redemption(api):
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="900.00")
    r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "spend", "points": 90}, role="agent")
    assert r.status_code == 201, r.text
    out = give_back(api, t["id"], "r1", amount="900.00").json()
    assert out["points_reversed"] == 90
    assert out["balance"] == {"available": -90, "pending": 0}
    before = state(api)
    r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r-neg", "points": 1}, role="agent")
    assert_problem(r, 409, "insufficient_points")
    assert_problem(buy(api, m["id"], "t2", total="10.00", redeem_points=1), 409, "insufficient_points")
    assert state(api) == before
    # a later purchase pays the debt first: −90 + 100 = 10
    assert bought(api, m["id"], "t3", total="1000.00")["balance"]["available"] == 10
    assert (
        api.post(
            f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r-ok", "points": 10}, role="agent"
        ).status_code
        == 201
    )
    assert points(api, m["id"])["available"] == 0
    assert_ledger_consistent(api)


def test_return_of_pending_points_takes_them_from_pending(api):
    program(api, pending_days=14)
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    t = bought(api, m["id"], "t1", total="300.00")
    assert t["balance"] == {"available": 0, "pending": 30}
    out = give_back(api, t["id"], "r1", amount="100.00").json()
    # 30 × 1/3 = 10
    assert out["points_reversed"] == 10
    assert out["balance"] == {"available": 0, "pending": 20}
    assert run_job(api, "release-pending", now() + timedelta(days=15))["points"] == 20
    assert points(api, m["id"])["available"] == 20
    assert_ledger_consistent(api)


def test_returns_are_idempotent_by_external_id(api):
    m, t = returnable(api)
    first = give_back(api, t["id"], "r1", items=[{"sku": "A", "quantity": "1"}])
    assert first.status_code == 201
    after = state(api)
    again = give_back(api, t["id"], "r1", items=[{"sku": "A", "quantity": "1"}])
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert state(api) == after
    assert_problem(give_back(api, t["id"], "r1", items=[{"sku": "B", "quantity": "1"}]), 409, "idempotency_conflict")
    assert_problem(give_back(api, t["id"], "r1", amount="10.00"), 409, "idempotency_conflict")
    assert state(api) == after
    assert points(api, m["id"])["available"] == 93
    assert_ledger_consistent(api)


def test_return_of_a_purchase_paid_only_with_points(api):
    spend_rule(api, points=1, per_amount="10.00")
    m = api.enrol()
    give(api, m["id"], 100)
    t = bought(api, m["id"], "t1", items=[{"sku": "B", "quantity": "2", "unit_price": "50.00"}], redeem_points=100)
    assert (t["amount_due"], t["points_earned"]) == ("0.00", 0)
    out = give_back(api, t["id"], "r1", items=[{"sku": "B", "quantity": "1"}]).json()
    # no money was paid: the share falls back to the goods' totals, 50.00 / 100.00 = 0.5 → 50 back
    assert (out["points_reversed"], out["points_restored"]) == (0, 50)
    before = state(api)
    assert_problem(give_back(api, t["id"], "r2", amount="1.00"), 422, "validation_error")
    assert state(api) == before
    assert_ledger_consistent(api)


def test_points_are_spendable_once_the_hold_has_passed_even_before_the_job(api):
    program(api, pending_days=14)
    spend_rule(api)
    m = api.enrol()
    start = now()
    bought(api, m["id"], "t1", total="300.00")
    with clock.frozen(start + timedelta(days=14, minutes=1)):
        # the redemption finds the 30 points matured and spends them
        r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r1", "points": 30}, role="agent")
        assert r.status_code == 201, r.text
        assert points(api, m["id"]) | {"expiring": None} == {
            "available": 0,
            "pending": 0,
            "lifetime_earned": 30,
            "redeemed": 30,
            "expired": 0,
            "expiring": None,
        }
    assert run_job(api, "release-pending", start + timedelta(days=15)) == {"members": 0, "points": 0}
    assert_ledger_consistent(api)


def test_released_points_pay_a_debt_first(api):
    program(api, pending_days=14)
    spend_rule(api)
    m = api.enrol()
    old = bought(api, m["id"], "t-old", total="900.00", occurred_at=iso(now() - timedelta(days=20)))
    assert old["balance"] == {"available": 90, "pending": 0}
    assert (
        api.post(
            f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r1", "points": 90}, role="agent"
        ).status_code
        == 201
    )
    new = bought(api, m["id"], "t-new", total="1000.00")
    assert new["balance"] == {"available": 0, "pending": 100}
    # the old purchase comes back: its 90 points were spent, and the pending ones are not spendable
    out = give_back(api, old["id"], "ret", amount="900.00").json()
    assert out["balance"] == {"available": -90, "pending": 100}
    assert_ledger_consistent(api)
    assert run_job(api, "release-pending", now() + timedelta(days=15)) == {"members": 1, "points": 100}
    # −90 + 100
    assert (points(api, m["id"])["available"], points(api, m["id"])["pending"]) == (10, 0)
    assert_ledger_consistent(api)
    before = state(api)
    r = api.post(f"/v1/members/{m['id']}/points/redemptions", {"external_id": "r2", "points": 11}, role="agent")
    assert_problem(r, 409, "insufficient_points")
    assert state(api) == before


def test_jobs_are_for_admins(api):
    for role in ("cashier", "agent", "marketer", "analyst"):
        r = api.post("/v1/jobs/release-pending/run", {"as_of": iso(now())}, role=role)
        assert_problem(r, 403, "forbidden")
    assert_problem(api.post("/v1/jobs/no-such-job/run", {}), 404, "not_found")


# Referral ---------------------------------------------------------------------------------------


def test_referral_rewards_both_members_at_the_newcomers_first_transaction(api):
    spend_rule(api)
    referral = rule(api, kind="referral", name="Bring a friend", points=150)
    old_hand = api.enrol()
    newcomer = api.enrol(referral_code=old_hand["referral_code"])
    assert newcomer["points"] == {"available": 0, "pending": 0}
    t = bought(api, newcomer["id"], "t1", total="100.00")
    # the purchase earns 10; the referral bonus is a bonus of its own, outside points_earned
    assert t["points_earned"] == 10
    assert [b["rule_name"] for b in t["breakdown"]] == ["spend"]
    assert t["balance"] == {"available": 160, "pending": 0}
    for who, total in ((newcomer, 160), (old_hand, 150)):
        bonus = [e for e in ledger(api, who["id"]) if e["kind"] == "bonus"]
        assert [(e["points"], e["rule_id"]) for e in bonus] == [(150, referral["id"])]
        assert points(api, who["id"])["available"] == total
    # only the first transaction
    assert bought(api, newcomer["id"], "t2", total="100.00")["balance"]["available"] == 170
    assert points(api, old_hand["id"])["available"] == 150
    # a member nobody referred gets nothing of the kind, and neither does anyone else
    assert bought(api, old_hand["id"], "t3", total="100.00")["balance"]["available"] == 160
    assert_ledger_consistent(api)


def test_referral_after_a_refused_first_attempt_and_with_a_blocked_referrer(api):
    rule(api, kind="referral", name="Bring a friend", points=150)
    old_hand = api.enrol()
    newcomer = api.enrol(referral_code=old_hand["referral_code"])
    before = state(api)
    assert_problem(buy(api, newcomer["id"], "t1", total="100.00", redeem_points=1), 409, "insufficient_points")
    assert state(api) == before
    assert api.post(f"/v1/members/{old_hand['id']}/block", {"reason": "fraud"}, role="agent").status_code == 200
    # the refused attempt was not a transaction: this one is the first; a blocked referrer earns nothing
    assert bought(api, newcomer["id"], "t1", total="100.00")["balance"]["available"] == 150
    assert points(api, old_hand["id"])["available"] == 0
    assert_ledger_consistent(api)


def test_a_key_scoped_to_a_location_records_there_and_nowhere_else(api):
    m = api.enrol()
    key = api.key("cashier", location="MSK-01")
    headers = {"Authorization": f"Bearer {key}"}
    r = api.post(
        "/v1/transactions", {"external_id": "t1", "member_id": m["id"], "total": "100.00"}, role=None, headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "MSK-01"
    before = state(api)
    r = api.post(
        "/v1/transactions",
        {"external_id": "t2", "member_id": m["id"], "total": "100.00", "location": "SPB-01"},
        role=None,
        headers=headers,
    )
    assert_problem(r, 403, "forbidden")
    assert state(api) == before
