"""Tiers: the ladder, immediate upgrades inside the purchase, the multiplier, progress."""

LADDER = {
    "metric": "points",
    "window_days": 365,
    "tiers": [
        {"code": "new", "name": "New", "threshold": 0, "multiplier": "1", "benefits": []},
        {"code": "regular", "name": "Regular", "threshold": 100, "multiplier": "1.5", "benefits": ["free coffee"]},
        {"code": "vip", "name": "VIP", "threshold": 1000, "multiplier": "2", "benefits": ["personal manager"]},
    ],
}


def test_put_and_get_ladder(api):
    r = api.put("/v1/tiers", LADDER, role="marketer")
    assert r.status_code == 200, r.text
    assert api.get("/v1/tiers").json() == LADDER
    m = api.enrol()
    assert m["tier"] == {"code": "new", "name": "New"}
    assert m["tier_progress"] == {"metric": "points", "value": 0, "next_tier": "regular", "needed": 100}


def test_ladder_validation(api):
    bad = {**LADDER, "tiers": [{**LADDER["tiers"][0], "threshold": 5}, *LADDER["tiers"][1:]]}
    r = api.put("/v1/tiers", bad)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "tiers.0.threshold"
    bad = {**LADDER, "tiers": [LADDER["tiers"][0], LADDER["tiers"][2], LADDER["tiers"][1]]}
    assert api.put("/v1/tiers", bad).status_code == 422
    assert api.put("/v1/tiers", LADDER, role="cashier").status_code == 403
    assert api.get("/v1/tiers").json()["tiers"][0]["code"] == "member"


def test_upgrade_is_immediate_and_the_multiplier_applies_after(api):
    api.put("/v1/tiers", LADDER)
    api.post("/v1/earning-rules", {"name": "1 per 10", "kind": "spend", "points": 1, "per_amount": "10"})
    m = api.enrol()
    # 1200.00 / 10 = 120 points: over the 100 threshold, so the answer already says Regular.
    r = api.post("/v1/transactions", {"external_id": "t1", "member_id": m["id"], "total": "1200.00"})
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 120
    assert r.json()["tier"] == {"code": "regular", "name": "Regular"}
    # The next purchase earns floor(10 × 1.5) = 15, the tier's 5 in the breakdown.
    r = api.post("/v1/transactions", {"external_id": "t2", "member_id": m["id"], "total": "100.00"})
    body = r.json()
    assert body["points_earned"] == 15
    assert [b["points"] for b in body["breakdown"]] == [10, 5]
    assert body["breakdown"][1]["rule_id"] is None
    member = api.get(f"/v1/members/{m['id']}").json()
    assert member["tier_progress"] == {"metric": "points", "value": 135, "next_tier": "vip", "needed": 865}


def test_a_return_does_not_downgrade(api):
    api.put("/v1/tiers", LADDER)
    api.post("/v1/earning-rules", {"name": "1 per 10", "kind": "spend", "points": 1, "per_amount": "10"})
    m = api.enrol()
    t = api.post("/v1/transactions", {"external_id": "t1", "member_id": m["id"], "total": "1000.00"}).json()
    assert t["tier"]["code"] == "regular"
    r = api.post(f"/v1/transactions/{t['id']}/returns", {"external_id": "r1", "amount": "1000.00"})
    assert r.json()["points_reversed"] == 100
    member = api.get(f"/v1/members/{m['id']}").json()
    assert member["tier"]["code"] == "regular"
    assert member["tier_progress"]["value"] == 0


def test_spend_metric_progress_is_money(api):
    api.put("/v1/tiers", {**LADDER, "metric": "spend", "window_days": None})
    m = api.enrol()
    r = api.post("/v1/transactions", {"external_id": "t1", "member_id": m["id"], "total": "99.50"})
    assert r.json()["tier"]["code"] == "new"
    member = api.get(f"/v1/members/{m['id']}").json()
    assert member["tier_progress"] == {"metric": "spend", "value": "99.50", "next_tier": "regular", "needed": "0.50"}
    r = api.post("/v1/transactions", {"external_id": "t2", "member_id": m["id"], "total": "0.50"})
    assert r.json()["tier"]["code"] == "regular"


def test_item_returns_lower_the_spend_metric(api):
    api.put("/v1/tiers", {**LADDER, "metric": "spend", "window_days": None})
    m = api.enrol()
    items = [
        {"sku": "TYRE", "category": "tyres", "quantity": "4", "unit_price": "20.00"},
        {"sku": "WASH", "category": "service", "quantity": "1", "unit_price": "20.00"},
    ]
    t = api.post("/v1/transactions", {"external_id": "t1", "member_id": m["id"], "items": items}).json()
    assert t["amount_due"] == "100.00"
    r = api.post(
        f"/v1/transactions/{t['id']}/returns", {"external_id": "r1", "items": [{"sku": "TYRE", "quantity": "1"}]}
    )
    assert r.status_code == 201, r.text
    member = api.get(f"/v1/members/{m['id']}").json()
    # 100.00 spent, one 20.00 tyre back: 80.00 counts towards the next tier.
    assert member["tier_progress"]["value"] == "80.00"
