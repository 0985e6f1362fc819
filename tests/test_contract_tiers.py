"""Black-box contract checks of API.md "Tiers" and "Segments" (and the jobs that move them), via HTTP.

Tiers: thresholds ascend from 0 (else 422), a purchase's upgrade shows in its own answer, the
member's `tier_progress` counts the metric over the window ending now, and a member goes down only
when `requalify-tiers` runs (as of the instant it is given). Segments: the shipped three, the list of
members with `total`, and membership as the last `refresh-segments` computed it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from patron.kit import clock
from tests.helpers import assert_problem
from tests.test_contract_common import (
    bought,
    enrol,
    get_member,
    is_int,
    is_list_page,
    is_money,
    member,
    ok,
    run_job,
    spend_rule,
)


def tier_(code: str, threshold: int, multiplier: str = "1", benefits: list[str] | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "name": code.title(),
        "threshold": threshold,
        "multiplier": multiplier,
        "benefits": benefits or [],
    }


LADDER: dict[str, Any] = {
    "metric": "points",
    "window_days": None,
    "tiers": [tier_("bronze", 0), tier_("silver", 100, "1.5", ["coffee"]), tier_("gold", 1000, "2", ["lounge"])],
}


def put(api: Any, ladder: dict[str, Any], role: str = "marketer") -> dict[str, Any]:
    return ok(api.put("/v1/tiers", ladder, role=role), 200)


def tier_of(api: Any, member_id: str) -> str:
    return str(get_member(api, member_id)["tier"]["code"])


def progress(api: Any, member_id: str) -> dict[str, Any]:
    return dict(get_member(api, member_id)["tier_progress"])


# The ladder -------------------------------------------------------------------------------------


def test_put_and_get_the_ladder(api):
    answer = put(api, LADDER)
    got = ok(api.get("/v1/tiers", role="analyst"), 200)
    assert answer == got
    assert (got["metric"], got["window_days"]) == ("points", None)
    assert [(t["code"], t["name"], t["threshold"], t["benefits"]) for t in got["tiers"]] == [
        ("bronze", "Bronze", 0, []),
        ("silver", "Silver", 100, ["coffee"]),
        ("gold", "Gold", 1000, ["lounge"]),
    ]
    for t in got["tiers"]:
        is_int(t["threshold"])
        assert isinstance(t["multiplier"], str)
    assert [float(t["multiplier"]) for t in got["tiers"]] == [1, 1.5, 2]
    windowed = put(api, {**LADDER, "metric": "spend", "window_days": 365}, role="admin")
    assert (windowed["metric"], windowed["window_days"]) == ("spend", 365)


@pytest.mark.parametrize(
    ("tiers", "why"),
    [
        ([tier_("a", 10), tier_("b", 100)], "the first is not 0"),
        ([tier_("a", 0), tier_("b", 500), tier_("c", 100)], "descending"),
        ([tier_("a", 0), tier_("b", 100), tier_("c", 100)], "equal thresholds do not ascend"),
        ([tier_("a", 0), tier_("b", 0)], "two at 0"),
        ([], "no tiers"),
        ([tier_("a", 0), tier_("b", -5)], "negative"),
    ],
)
def test_bad_ladders_are_422_and_change_nothing(api, tiers, why):
    put(api, LADDER)
    m = member(api)
    before = (ok(api.get("/v1/tiers"), 200), get_member(api, m))
    r = api.put("/v1/tiers", {**LADDER, "tiers": tiers}, role="marketer")
    problem = assert_problem(r, 422, "validation_error")
    assert all(e["field"].startswith("tiers") for e in problem["errors"]), (why, problem)
    assert (ok(api.get("/v1/tiers"), 200), get_member(api, m)) == before


def test_other_ladder_errors(api):
    put(api, LADDER)
    before = ok(api.get("/v1/tiers"), 200)
    assert_problem(api.put("/v1/tiers", {**LADDER, "metric": "money"}), 422, "validation_error", field="metric")
    assert_problem(api.put("/v1/tiers", {**LADDER, "window_days": 0}), 422, "validation_error", field="window_days")
    assert_problem(api.put("/v1/tiers", {**LADDER, "tiers": [tier_("a", 0), tier_("a", 10)]}), 422, "validation_error")
    assert_problem(
        api.put("/v1/tiers", {"metric": "points", "window_days": None}), 422, "validation_error", field="tiers"
    )
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.put("/v1/tiers", LADDER, role=role), 403, "forbidden")
    assert ok(api.get("/v1/tiers"), 200) == before


# The member's tier and progress --------------------------------------------------------------------


def test_a_new_member_starts_in_the_first_tier_with_progress(api):
    put(api, LADDER)
    m = get_member(api, enrol(api))
    assert m["tier"] == {"code": "bronze", "name": "Bronze"}
    assert m["tier_progress"] == {"metric": "points", "value": 0, "next_tier": "silver", "needed": 100}


def test_upgrade_is_in_the_transaction_answer_and_the_multiplier_applies_after(api):
    put(api, LADDER)
    spend_rule(api, 1, "1.00")
    m = member(api)
    t = bought(api, m, total="99.00")
    assert (t["points_earned"], t["tier"]) == (99, {"code": "bronze", "name": "Bronze"})
    assert progress(api, m) == {"metric": "points", "value": 99, "next_tier": "silver", "needed": 1}
    t = bought(api, m, total="1.00")
    assert (t["points_earned"], t["tier"]) == (1, {"code": "silver", "name": "Silver"})
    assert get_member(api, m)["tier"] == {"code": "silver", "name": "Silver"}
    assert progress(api, m) == {"metric": "points", "value": 100, "next_tier": "gold", "needed": 900}
    # Silver earns 1.5 ×: floor(101 × 1.5) = 151, the tier's 50 a line of its own.
    t = bought(api, m, total="101.00")
    assert t["points_earned"] == 151
    assert sorted(b["points"] for b in t["breakdown"]) == [50, 101]
    assert progress(api, m) == {"metric": "points", "value": 251, "next_tier": "gold", "needed": 749}
    # Two tiers in one purchase: straight to gold.
    t = bought(api, m, total="600.00")
    assert (t["points_earned"], t["tier"]["code"]) == (900, "gold")
    assert progress(api, m) == {"metric": "points", "value": 1151, "next_tier": None, "needed": None}


def test_spend_metric_counts_amount_due_as_money(api):
    put(api, {**LADDER, "metric": "spend"})
    m = member(api, 100)
    t = bought(api, m, total="149.99", redeem_points=50)
    assert t["amount_due"] == "99.99"
    assert t["tier"]["code"] == "bronze"
    p = progress(api, m)
    assert p == {"metric": "spend", "value": "99.99", "next_tier": "silver", "needed": "0.01"}
    is_money(p["value"])
    t = bought(api, m, total="0.01")
    assert t["tier"]["code"] == "silver"
    assert progress(api, m) == {"metric": "spend", "value": "100.00", "next_tier": "gold", "needed": "900.00"}


def test_spend_outside_the_window_does_not_count(api):
    put(api, {**LADDER, "metric": "spend", "window_days": 30})
    m = member(api)
    old = (clock.now() - timedelta(days=40)).isoformat()
    t = bought(api, m, total="500.00", occurred_at=old)
    assert t["tier"]["code"] == "bronze"
    assert progress(api, m) == {"metric": "spend", "value": "0.00", "next_tier": "silver", "needed": "100.00"}
    recent = (clock.now() - timedelta(days=20)).isoformat()
    t = bought(api, m, total="100.00", occurred_at=recent)
    assert t["tier"]["code"] == "silver"
    assert progress(api, m)["value"] == "100.00"


def test_visits_metric_counts_transactions(api):
    put(api, {**LADDER, "metric": "visits", "tiers": [tier_("bronze", 0), tier_("silver", 2), tier_("gold", 5)]})
    m = member(api)
    assert progress(api, m) == {"metric": "visits", "value": 0, "next_tier": "silver", "needed": 2}
    assert bought(api, m, total="10.00")["tier"]["code"] == "bronze"
    assert bought(api, m, total="10.00")["tier"]["code"] == "silver"
    assert progress(api, m) == {"metric": "visits", "value": 2, "next_tier": "gold", "needed": 3}


def test_a_return_lowers_the_metric_but_not_the_tier(api):
    put(api, LADDER)
    spend_rule(api, 1, "1.00")
    m = member(api)
    t = bought(api, m, total="150.00")
    assert t["tier"]["code"] == "silver"
    r = ok(api.post(f"/v1/transactions/{t['id']}/returns", {"external_id": "ret-1", "amount": "100.00"}))
    assert r["points_reversed"] == 100
    assert tier_of(api, m) == "silver"
    assert progress(api, m)["value"] == 50
    # A small purchase does not downgrade either.
    assert bought(api, m, total="1.00")["tier"]["code"] == "silver"
    assert tier_of(api, m) == "silver"
    # requalify-tiers does: 51 points now, under silver's 100.
    run_job(api, "requalify-tiers")
    assert tier_of(api, m) == "bronze"
    assert progress(api, m) == {"metric": "points", "value": 51, "next_tier": "silver", "needed": 49}


def test_downgrade_only_by_the_job_and_as_of_its_instant(api):
    put(api, {**LADDER, "window_days": 30})
    spend_rule(api, 1, "1.00")
    t0 = clock.now()
    m = member(api)
    assert bought(api, m, total="200.00")["tier"]["code"] == "silver"
    later = t0 + timedelta(days=45)
    with clock.frozen(later):
        # The window that ends now holds nothing, yet the member keeps silver until the job runs.
        assert progress(api, m)["value"] == 0
        assert tier_of(api, m) == "silver"
        assert bought(api, m, total="1.00")["tier"]["code"] == "silver"
    # As of a day after the purchase the points are still in the window: no change.
    run_job(api, "requalify-tiers", as_of=t0 + timedelta(days=1))
    assert tier_of(api, m) == "silver"
    # As of 45 days later only the 1 point bought then counts.
    answer = run_job(api, "requalify-tiers", as_of=later)
    assert answer.get("as_of") is None or _same_instant(answer["as_of"], later)
    assert tier_of(api, m) == "bronze"


def _same_instant(text: str, when: datetime) -> bool:
    return abs(datetime.fromisoformat(text) - when) < timedelta(seconds=1)


def test_a_new_ladder_places_members_by_their_metric_at_once(api):
    spend_rule(api, 1, "1.00")
    m = member(api)
    bought(api, m, total="1500.00")
    put(api, LADDER)
    assert tier_of(api, m) == "gold"
    assert progress(api, m) == {"metric": "points", "value": 1500, "next_tier": None, "needed": None}


def test_requalify_also_moves_up(api):
    # A ladder put after the earning: the job places members by their metric.
    spend_rule(api, 1, "1.00")
    m = member(api)
    bought(api, m, total="1500.00")
    put(api, LADDER)
    run_job(api, "requalify-tiers")
    assert tier_of(api, m) == "gold"


# Segments ---------------------------------------------------------------------------------------


def test_a_fresh_programme_ships_vip_regular_and_new(api):
    items = is_list_page(ok(api.get("/v1/segments?limit=500", role="analyst"), 200))
    assert {"vip", "regular", "new"} <= {s["code"] for s in items}
    for code in ("vip", "regular", "new"):
        page = ok(api.get(f"/v1/segments/{code}/members"), 200)
        is_list_page(page)
        is_int(page["total"])


def test_segment_create_shape_roles_and_validation(api):
    body = {
        "code": "big-spenders",
        "name": "Big spenders",
        "match": "any",
        "conditions": [
            {"field": "spend", "op": "gte", "value": "1000.00", "window_days": 90},
            {"field": "visits", "op": "gt", "value": 3},
        ],
    }
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.post("/v1/segments", body, role=role), 403, "forbidden")
    made = ok(api.post("/v1/segments", body, role="marketer"))
    assert {k: made[k] for k in ("code", "name", "match")} == {
        "code": "big-spenders",
        "name": "Big spenders",
        "match": "any",
    }
    assert [(c["field"], c["op"]) for c in made["conditions"]] == [("spend", "gte"), ("visits", "gt")]
    assert made["conditions"][0]["window_days"] == 90
    codes = [s["code"] for s in ok(api.get("/v1/segments?limit=500"), 200)["items"]]
    assert "big-spenders" in codes

    def bad(change: dict[str, Any], field: str) -> None:
        r = api.post("/v1/segments", {**body, "code": f"x{uuid.uuid4().hex[:6]}", **change}, role="marketer")
        problem = assert_problem(r, 422, "validation_error")
        assert any(e["field"].startswith(field) for e in problem["errors"]), problem

    bad({"match": "some"}, "match")
    bad({"conditions": [{"field": "height", "op": "gte", "value": 1}]}, "conditions")
    bad({"conditions": [{"field": "spend", "op": "ne", "value": "1.00"}]}, "conditions")
    bad({"name": None}, "name")
    assert [s["code"] for s in ok(api.get("/v1/segments?limit=500"), 200)["items"]] == codes


def test_segment_members_follow_the_last_refresh_with_a_total(api):
    segment = {
        "code": "bmw",
        "name": "BMW drivers",
        "match": "all",
        "conditions": [{"field": "attribute.car", "op": "eq", "value": "BMW"}],
    }
    ok(api.post("/v1/segments", segment, role="marketer"))
    ids = []
    for car in ("BMW", "BMW", "BMW", "Lada"):
        body = {
            "first_name": "Petr",
            "last_name": "Driver",
            "phone": f"+7915{uuid.uuid4().int % 10**7:07d}",
            "attributes": {"car": car},
            "consents": {"program_rules": True},
        }
        ids.append(ok(api.post("/v1/members", body, role="cashier"))["id"])
    before = ok(api.get("/v1/segments/bmw/members"), 200)
    assert (before["items"], before["next_cursor"], before["total"]) == ([], None, 0)
    assert "bmw" not in get_member(api, ids[0])["segments"]

    run_job(api, "refresh-segments")
    everyone = ok(api.get("/v1/segments/bmw/members", role="marketer"), 200)
    assert everyone["total"] == 3
    assert sorted(m["id"] for m in everyone["items"]) == sorted(ids[:3])
    assert all(set(m) >= {"id", "number", "tier", "segments"} for m in everyone["items"])
    first = ok(api.get("/v1/segments/bmw/members?limit=2"), 200)
    assert (len(first["items"]), first["total"]) == (2, 3)
    rest = ok(api.get(f"/v1/segments/bmw/members?limit=2&cursor={first['next_cursor']}"), 200)
    assert (len(rest["items"]), rest["next_cursor"], rest["total"]) == (1, None, 3)
    assert sorted(m["id"] for m in first["items"] + rest["items"]) == sorted(ids[:3])
    assert "bmw" in get_member(api, ids[0])["segments"]
    assert "bmw" not in get_member(api, ids[3])["segments"]
    assert_problem(api.get("/v1/segments/nope/members"), 404, "not_found")
    assert_problem(api.get("/v1/segments/bmw/members?limit=501"), 422, "validation_error", field="limit")

    # A change counts only at the next refresh.
    ok(api.patch(f"/v1/members/{ids[3]}", {"attributes": {"car": "BMW"}}, role="agent"), 200)
    assert ok(api.get("/v1/segments/bmw/members"), 200)["total"] == 3
    run_job(api, "refresh-segments")
    assert ok(api.get("/v1/segments/bmw/members"), 200)["total"] == 4


def test_refresh_segments_as_of(api):
    segment = {
        "code": "old-hands",
        "name": "Old hands",
        "match": "all",
        "conditions": [{"field": "days_since_enrolled", "op": "gte", "value": 10}],
    }
    ok(api.post("/v1/segments", segment, role="marketer"))
    m = member(api)
    run_job(api, "refresh-segments")
    assert ok(api.get("/v1/segments/old-hands/members"), 200)["total"] == 0
    run_job(api, "refresh-segments", as_of=clock.now() + timedelta(days=11))
    page = ok(api.get("/v1/segments/old-hands/members"), 200)
    assert (page["total"], [x["id"] for x in page["items"]]) == (1, [m])
    assert "old-hands" in get_member(api, m)["segments"]


def test_tier_segment_condition(api):
    put(api, LADDER)
    spend_rule(api, 1, "1.00")
    segment = {
        "code": "silvers",
        "name": "Silver or better",
        "match": "any",
        "conditions": [{"field": "tier", "op": "in", "value": ["silver", "gold"]}],
    }
    ok(api.post("/v1/segments", segment, role="marketer"))
    up, stay = member(api), member(api)
    bought(api, up, total="150.00")
    bought(api, stay, total="50.00")
    run_job(api, "refresh-segments")
    page = ok(api.get("/v1/segments/silvers/members"), 200)
    assert (page["total"], [x["id"] for x in page["items"]]) == (1, [up])
    assert get_member(api, up)["segments"].count("silvers") == 1
    assert "silvers" not in get_member(api, stay)["segments"]
