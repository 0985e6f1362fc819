"""Rewards catalogue, claims and coupons through the API (API.md "Rewards and coupons")."""

from __future__ import annotations

import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.db import Database
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET
from patron.ledger.models import LedgerEntry
from patron.ledger.verify import verify
from patron.rewards import service as rewards
from patron.rewards.models import Coupon
from patron.transactions.models import Transaction
from tests.conftest import TEST_SECRET
from tests.helpers import assert_problem, state
from tests.live_server import LiveServer

REWARD_KEYS = {
    "id",
    "name",
    "description",
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
    "claimed",
    "created_at",
    "updated_at",
}
COUPON_KEYS = {
    # API.md
    "code",
    "reward_id",
    "member_id",
    "status",
    "expires_at",
    "used_at",
    "transaction_id",
    # added by Patron
    "reward_name",
    "kind",
    "value",
    "sku",
    "max_discount",
    "discount",
    "points_spent",
    "claimed_at",
    "cancelled_at",
}
CODE = re.compile(rf"^[{DICTATION_ALPHABET}]{{4}}-[{DICTATION_ALPHABET}]{{4}}-[{DICTATION_ALPHABET}]{{4}}$")
LADDER = {
    "metric": "points",
    "window_days": None,
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0, "multiplier": "1", "benefits": []},
        {"code": "gold", "name": "Gold", "threshold": 1000, "multiplier": "1", "benefits": []},
    ],
}


# Small helpers ----------------------------------------------------------------------------------


def reward(api: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Reward")
    body.setdefault("kind", "gift")
    body.setdefault("cost_points", 100)
    body.setdefault("valid_days", 30)
    r = api.post("/v1/rewards", body, role="marketer")
    assert r.status_code == 201, r.text
    return dict(r.json())


def give(api: Any, member_id: str, points: int, external_id: str | None = None) -> None:
    r = api.post(
        f"/v1/members/{member_id}/points/adjustments",
        {"external_id": external_id or f"seed-{uuid.uuid4()}", "points": points, "reason": "test seed"},
        role="agent",
    )
    assert r.status_code == 201, r.text


def member_with(api: Any, points: int) -> str:
    m = api.enrol()
    if points:
        give(api, m["id"], points)
    return str(m["id"])


def claim(api: Any, member_id: str, reward_id: str, external_id: str, role: str = "cashier") -> Any:
    return api.post(f"/v1/members/{member_id}/rewards/{reward_id}/claims", {"external_id": external_id}, role=role)


def claimed(api: Any, member_id: str, reward_id: str, external_id: str | None = None) -> dict[str, Any]:
    r = claim(api, member_id, reward_id, external_id or f"claim-{uuid.uuid4()}")
    assert r.status_code == 201, r.text
    return dict(r.json())


def points(api: Any, member_id: str) -> dict[str, Any]:
    return dict(api.get(f"/v1/members/{member_id}/points").json())


def ledger(api: Any, member_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/v1/members/{member_id}/ledger").json()["items"])


def get_reward(api: Any, reward_id: str) -> dict[str, Any]:
    return dict(api.get(f"/v1/rewards/{reward_id}").json())


def coupon(api: Any, code: str) -> dict[str, Any]:
    r = api.get(f"/v1/coupons/{code}", role="cashier")
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_ledger_clean(api: Any) -> None:
    checked, mismatches = api.db.read(verify)
    assert mismatches == []
    assert checked > 0


# Catalogue --------------------------------------------------------------------------------------


def test_create_each_kind_with_every_field(api):
    r = api.post(
        "/v1/rewards",
        {
            "name": " 10% off a service ",
            "description": "Any service, once",
            "kind": "percent_discount",
            "value": "12.5",
            "max_discount": "1500",
            "cost_points": 500,
            "stock": 20,
            "limit_per_member": 2,
            "tiers": ["member"],
            "segments": ["vip", "regular"],
            "valid_days": 60,
        },
        role="marketer",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == REWARD_KEYS
    uuid.UUID(body["id"])
    assert body["created_at"] == body["updated_at"]
    expected = {
        "name": "10% off a service",
        "description": "Any service, once",
        "kind": "percent_discount",
        "value": "12.5",
        "sku": None,
        "max_discount": "1500.00",
        "cost_points": 500,
        "stock": 20,
        "limit_per_member": 2,
        "tiers": ["member"],
        "segments": ["vip", "regular"],
        "valid_days": 60,
        "active": True,
        "claimed": 0,
    }
    assert {k: body[k] for k in expected} == expected
    assert api.get(f"/v1/rewards/{body['id']}", role="cashier").json() == body

    amount = reward(api, kind="amount_discount", value="300", cost_points=0, active=False)
    assert (amount["value"], amount["max_discount"], amount["cost_points"], amount["active"]) == (
        "300.00",
        None,
        0,
        False,
    )
    free = reward(api, kind="free_item", sku=" OIL-5W30 ")
    assert (free["sku"], free["value"], free["stock"], free["limit_per_member"]) == ("OIL-5W30", None, None, None)
    for kind in ("gift", "privilege"):
        plain = reward(api, kind=kind)
        assert (plain["kind"], plain["value"], plain["tiers"], plain["segments"]) == (kind, None, [], [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "percent_discount"}, "value"),
        ({"kind": "percent_discount", "value": "0"}, "value"),
        ({"kind": "percent_discount", "value": "100.01"}, "value"),
        ({"kind": "percent_discount", "value": "-5"}, "value"),
        ({"kind": "percent_discount", "value": "10.12345"}, "value"),
        ({"kind": "percent_discount", "value": "ten"}, "value"),
        ({"kind": "percent_discount", "value": 10.5, "max_discount": "0"}, "max_discount"),
        ({"kind": "amount_discount"}, "value"),
        ({"kind": "amount_discount", "value": "0.001"}, "value"),
        ({"kind": "amount_discount", "value": "0"}, "value"),
        ({"kind": "amount_discount", "value": "100", "max_discount": "50"}, "max_discount"),
        ({"kind": "free_item"}, "sku"),
        ({"kind": "gift", "sku": "X"}, "sku"),
        ({"kind": "gift", "value": "10"}, "value"),
        ({"kind": "voucher"}, "kind"),
        ({"kind": "gift", "cost_points": -1}, "cost_points"),
        ({"kind": "gift", "valid_days": 0}, "valid_days"),
        ({"kind": "gift", "stock": -1}, "stock"),
        ({"kind": "gift", "limit_per_member": 0}, "limit_per_member"),
        ({"kind": "gift", "tiers": ["platinum"]}, "tiers"),
        ({"kind": "gift", "segments": ["nobody"]}, "segments"),
        ({"kind": "gift", "name": ""}, "name"),
        ({"kind": "gift", "colour": "red"}, "colour"),
    ],
)
def test_reward_validation(api, body, field):
    body = {"name": "Bad", "cost_points": 10, "valid_days": 30, **body}
    before = state(api)
    r = api.post("/v1/rewards", body, role="marketer")
    problem = assert_problem(r, 422, "validation_error", field=field)
    assert all(e["message"] for e in problem["errors"])
    assert state(api) == before


def test_required_fields(api):
    r = api.post("/v1/rewards", {"kind": "gift"}, role="marketer")
    problem = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in problem["errors"]} == {"name", "cost_points", "valid_days"}
    assert all(e["message"] == "this field is required" for e in problem["errors"])


def test_patch_reward(api):
    r = reward(api, kind="percent_discount", value="10", stock=5, limit_per_member=1, tiers=["member"])
    path = f"/v1/rewards/{r['id']}"
    with clock.frozen(clock.now() + timedelta(minutes=1)):
        changed = api.patch(
            path,
            {"value": "15", "max_discount": "200.00", "stock": None, "active": False, "kind": "percent_discount"},
            role="marketer",
        )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["value"], body["max_discount"], body["stock"], body["active"]) == ("15", "200.00", None, False)
    assert (body["limit_per_member"], body["tiers"], body["name"]) == (1, ["member"], "Reward")
    assert body["updated_at"] > body["created_at"]
    assert get_reward(api, r["id"]) == body

    before = state(api)
    assert_problem(api.patch(path, {"kind": "gift"}, role="marketer"), 422, "validation_error", field="kind")
    assert_problem(api.patch(path, {"value": None}, role="marketer"), 422, "validation_error", field="value")
    assert_problem(api.patch(path, {"name": None}, role="marketer"), 422, "validation_error", field="name")
    assert_problem(api.patch(path, {"value": "101"}, role="marketer"), 422, "validation_error", field="value")
    assert_problem(api.patch(path, {"sku": "X"}, role="marketer"), 422, "validation_error", field="sku")
    assert_problem(api.patch(path, {"segments": ["x"]}, role="marketer"), 422, "validation_error", field="segments")
    assert_problem(api.patch(path, {"name": "x"}, role="cashier"), 403, "forbidden")
    assert_problem(api.patch(f"/v1/rewards/{uuid.uuid4()}", {"name": "x"}), 404, "not_found")
    assert state(api) == before

    audit = api.get("/v1/audit", params={"entity_type": "reward", "entity_id": r["id"]}).json()["items"]
    assert [a["action"] for a in audit] == ["reward.update", "reward.create"]


def test_list_rewards_with_filters_and_pages(api):
    made = [reward(api, name=f"R{i}", active=i != 1, kind="gift" if i % 2 else "privilege") for i in range(4)]
    ids = [m["id"] for m in made]
    assert [i["id"] for i in api.get("/v1/rewards", role="cashier").json()["items"]] == ids
    assert [i["id"] for i in api.get("/v1/rewards?active=true").json()["items"]] == [ids[0], ids[2], ids[3]]
    assert [i["id"] for i in api.get("/v1/rewards?active=false").json()["items"]] == [ids[1]]
    assert [i["id"] for i in api.get("/v1/rewards?kind=privilege").json()["items"]] == [ids[0], ids[2]]
    first = api.get("/v1/rewards?limit=3", role="analyst").json()
    assert [i["id"] for i in first["items"]] == ids[:3]
    rest = api.get(f"/v1/rewards?limit=3&cursor={first['next_cursor']}").json()
    assert ([i["id"] for i in rest["items"]], rest["next_cursor"]) == (ids[3:], None)
    assert_problem(api.get("/v1/rewards?kind=voucher"), 422, "validation_error", field="kind")
    assert_problem(api.get(f"/v1/rewards/{uuid.uuid4()}"), 404, "not_found")


def test_roles(api):
    body = {"name": "x", "kind": "gift", "cost_points": 1, "valid_days": 1}
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.post("/v1/rewards", body, role=role), 403, "forbidden")
    for role in ("marketer", "admin"):
        assert api.post("/v1/rewards", body, role=role).status_code == 201
    assert_problem(api.post("/v1/rewards", body, role=None), 401, "unauthorized")
    r = reward(api, cost_points=0)
    m = member_with(api, 0)
    assert_problem(claim(api, m, r["id"], "c-analyst", role="analyst"), 403, "forbidden")
    assert_problem(claim(api, m, r["id"], "c-marketer", role="marketer"), 403, "forbidden")
    code = claimed(api, m, r["id"])["code"]
    assert_problem(api.post(f"/v1/coupons/{code}/cancel", role="cashier"), 403, "forbidden")
    for role in ("cashier", "agent", "analyst", "marketer"):
        assert api.get(f"/v1/coupons/{code}", role=role).status_code == 200
        assert api.get(f"/v1/members/{m}/coupons", role=role).status_code == 200
        assert api.get(f"/v1/members/{m}/rewards", role=role).status_code == 200


# Claims -----------------------------------------------------------------------------------------


def test_claim_spends_points_takes_stock_issues_coupon(api):
    m = member_with(api, 1000)
    r = reward(api, name="Car wash", kind="free_item", sku="WASH", cost_points=300, stock=5, valid_days=14)
    before = clock.now()
    answer = claim(api, m, r["id"], "claim-1")
    assert answer.status_code == 201, answer.text
    assert "Idempotent-Replayed" not in answer.headers
    c = answer.json()
    assert set(c) == COUPON_KEYS
    assert CODE.match(c["code"]), c["code"]
    expected = {
        "reward_id": r["id"],
        "member_id": m,
        "status": "issued",
        "used_at": None,
        "transaction_id": None,
        "reward_name": "Car wash",
        "kind": "free_item",
        "value": None,
        "sku": "WASH",
        "max_discount": None,
        "discount": None,
        "points_spent": 300,
        "cancelled_at": None,
    }
    assert {k: c[k] for k in expected} == expected
    claimed_at = datetime.fromisoformat(c["claimed_at"])
    assert before <= claimed_at <= clock.now()
    assert datetime.fromisoformat(c["expires_at"]) - claimed_at == timedelta(days=14)

    assert coupon(api, c["code"]) == c
    assert (points(api, m)["available"], points(api, m)["redeemed"]) == (700, 300)
    entry = ledger(api, m)[0]
    assert (entry["kind"], entry["points"], entry["balance_after"]) == ("redeem", -300, 700)
    assert entry["reason"] == f"reward: Car wash (coupon {c['code']})"
    after = get_reward(api, r["id"])
    assert (after["stock"], after["claimed"]) == (4, 1)
    assert api.get(f"/v1/members/{m}/coupons").json() == {"items": [c], "next_cursor": None}
    assert_ledger_clean(api)


def test_claim_is_idempotent(api):
    m = member_with(api, 1000)
    someone = member_with(api, 500)
    r = reward(api, cost_points=100, stock=10)
    other = reward(api, cost_points=100)
    first = claim(api, m, r["id"], "same")
    assert first.status_code == 201
    before = state(api)
    again = claim(api, m, r["id"], "same")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_problem(claim(api, m, other["id"], "same"), 409, "idempotency_conflict")
    assert_problem(claim(api, someone, r["id"], "same"), 409, "idempotency_conflict")
    assert state(api) == before
    assert points(api, m)["available"] == 900
    assert (get_reward(api, r["id"])["stock"], get_reward(api, other["id"])["claimed"]) == (9, 0)
    # The same external_id may be used by a different kind of request.
    give(api, m, 1, external_id="same")


def test_claim_refusals_change_nothing(api):
    api.put("/v1/tiers", LADDER, role="marketer")
    rich = member_with(api, 1000)
    poor = member_with(api, 50)
    blocked = member_with(api, 1000)
    api.post(f"/v1/members/{blocked}/block", {"reason": "fraud"}, role="agent")
    cases = [
        (rich, reward(api, cost_points=100, active=False), "not_eligible"),
        (rich, reward(api, cost_points=100, tiers=["gold"]), "not_eligible"),
        (rich, reward(api, cost_points=100, segments=["vip"]), "not_eligible"),
        (rich, reward(api, cost_points=100, stock=0), "out_of_stock"),
        (poor, reward(api, cost_points=100), "insufficient_points"),
        (blocked, reward(api, cost_points=100), "member_blocked"),
    ]
    limited = reward(api, cost_points=100, limit_per_member=1)
    claimed(api, rich, limited["id"])
    cases.append((rich, limited, "limit_reached"))
    before = state(api)
    for i, (member, r, code) in enumerate(cases):
        problem = assert_problem(claim(api, member, r["id"], f"refused-{i}"), 409, code)
        assert problem["detail"]
    assert_problem(claim(api, rich, str(uuid.uuid4()), "refused-x"), 404, "not_found")
    assert_problem(claim(api, str(uuid.uuid4()), limited["id"], "refused-y"), 404, "not_found")
    assert_problem(claim(api, rich, limited["id"], ""), 422, "validation_error", field="external_id")
    assert state(api) == before
    # A refusal is not remembered: the same external_id is judged afresh once things change.
    give(api, poor, 50)
    assert claim(api, poor, cases[4][1]["id"], "refused-4").status_code == 201


def test_eligibility_by_tier_and_segment(api):
    api.put("/v1/tiers", LADDER, role="marketer")
    gold = member_with(api, 0)
    api.post("/v1/earning-rules", {"name": "1 per 1", "kind": "spend", "points": 1, "per_amount": "1.00"})
    r = api.post("/v1/transactions", {"external_id": "t-gold", "member_id": gold, "total": "1000.00"}, role="cashier")
    assert r.json()["tier"]["code"] == "gold"
    for_gold = reward(api, cost_points=10, tiers=["gold"])
    plain = member_with(api, 100)
    assert_problem(claim(api, plain, for_gold["id"], "tier-plain"), 409, "not_eligible")
    assert claim(api, gold, for_gold["id"], "tier-gold").status_code == 201

    api.post(
        "/v1/segments",
        {"code": "big", "name": "Big", "conditions": [{"field": "spend", "op": "gte", "value": "500.00"}]},
        role="marketer",
    )
    for_big = reward(api, cost_points=10, segments=["big", "vip"])
    # Membership is what the last refresh computed: not yet.
    assert_problem(claim(api, gold, for_big["id"], "seg-1"), 409, "not_eligible")
    assert api.post("/v1/jobs/refresh-segments/run", {}).status_code == 200
    assert claim(api, gold, for_big["id"], "seg-1").status_code == 201
    assert_problem(claim(api, plain, for_big["id"], "seg-2"), 409, "not_eligible")


def test_limit_per_member_does_not_count_cancelled(api):
    m = member_with(api, 1000)
    r = reward(api, cost_points=100, limit_per_member=2)
    first = claimed(api, m, r["id"])
    claimed(api, m, r["id"])
    assert_problem(claim(api, m, r["id"], "third"), 409, "limit_reached")
    assert claim(api, member_with(api, 100), r["id"], "someone-else").status_code == 201
    assert api.post(f"/v1/coupons/{first['code']}/cancel", role="agent").status_code == 200
    assert claim(api, m, r["id"], "third").status_code == 201
    assert_problem(claim(api, m, r["id"], "fourth"), 409, "limit_reached")
    assert points(api, m)["available"] == 1000 - 200


def test_claim_spends_the_soonest_expiring_points(api):
    api.patch("/v1/program", {"expiry": {"policy": "after_days", "days": 30}})
    m = api.enrol()["id"]
    t0 = clock.now()
    give(api, m, 100)  # expires t0 + 30 days
    with clock.frozen(t0 + timedelta(days=10)):
        give(api, m, 100)  # expires t0 + 40 days
        r = reward(api, cost_points=150)
        c = claimed(api, m, r["id"])
        left = points(api, m)
    assert left["available"] == 50
    assert [e["points"] for e in left["expiring"]] == [50]
    assert datetime.fromisoformat(left["expiring"][0]["expires_at"]) > t0 + timedelta(days=39)
    # Cancelled: each point goes back to the lot it came from, with its own expiry.
    with clock.frozen(t0 + timedelta(days=11)):
        assert api.post(f"/v1/coupons/{c['code']}/cancel", role="agent").status_code == 200
        back = points(api, m)
    assert back["available"] == 200
    assert [e["points"] for e in back["expiring"]] == [100, 100]
    assert_ledger_clean(api)


def test_claim_with_pending_points_only(api):
    api.patch("/v1/program", {"pending_days": 5})
    api.post("/v1/earning-rules", {"name": "1 per 1", "kind": "spend", "points": 1, "per_amount": "1.00"})
    m = api.enrol()["id"]
    api.post("/v1/transactions", {"external_id": "t-pend", "member_id": m, "total": "500.00"}, role="cashier")
    r = reward(api, cost_points=300)
    assert_problem(claim(api, m, r["id"], "too-early"), 409, "insufficient_points")
    with clock.frozen(clock.now() + timedelta(days=6)):
        c = claimed(api, m, r["id"], "later")
    assert c["points_spent"] == 300
    assert (points(api, m)["available"], points(api, m)["pending"]) == (200, 0)
    assert_ledger_clean(api)


def test_free_reward_makes_no_ledger_entry(api):
    m = member_with(api, 0)
    r = reward(api, kind="privilege", cost_points=0, stock=1)
    c = claimed(api, m, r["id"])
    assert c["points_spent"] == 0
    assert ledger(api, m) == []
    assert_problem(claim(api, member_with(api, 0), r["id"], "second"), 409, "out_of_stock")
    assert api.post(f"/v1/coupons/{c['code']}/cancel", role="agent").status_code == 200
    assert ledger(api, m) == []
    assert get_reward(api, r["id"])["stock"] == 1


# Coupons ----------------------------------------------------------------------------------------


def test_codes_are_read_in_any_form(api):
    m = member_with(api, 100)
    c = claimed(api, m, reward(api, cost_points=10)["id"])
    squeezed = c["code"].replace("-", "")
    for form in (squeezed, squeezed.lower(), c["code"].lower(), " ".join(c["code"].split("-")), f" {c['code']} "):
        assert coupon(api, form)["code"] == c["code"]
    assert rewards.normalise_code("\uff21" * 12) == "A" * 12  # full-width letters, as a Chinese IME types them
    for bad in ("NOPE", "0" * 12, squeezed[:-1], squeezed + "A", "%20"):
        assert_problem(api.get(f"/v1/coupons/{bad}"), 404, "not_found")
    codes = {claimed(api, m, reward(api, cost_points=0)["id"])["code"] for _ in range(5)}
    assert len(codes) == 5
    assert all(CODE.match(code) for code in codes)


def test_expired_coupon(api):
    m = member_with(api, 500)
    r = reward(api, cost_points=100, valid_days=7)
    c = claimed(api, m, r["id"])
    expires = datetime.fromisoformat(c["expires_at"])
    with clock.frozen(expires - timedelta(seconds=1)):
        assert coupon(api, c["code"])["status"] == "issued"
    with clock.frozen(expires):
        assert coupon(api, c["code"])["status"] == "expired"
        listed = api.get(f"/v1/members/{m}/coupons?status=expired").json()["items"]
        assert [x["code"] for x in listed] == [c["code"]]
        assert api.get(f"/v1/members/{m}/coupons?status=issued").json()["items"] == []
        before = state(api)
        assert_problem(api.post(f"/v1/coupons/{c['code']}/cancel", role="agent"), 409, "coupon_expired")
        r = api.post(
            "/v1/transactions",
            {"external_id": "late", "member_id": m, "total": "100.00", "coupons": [c["code"]]},
            role="cashier",
        )
        assert_problem(r, 409, "coupon_expired")
        assert state(api) == before
    assert api.get(f"/v1/members/{m}/coupons?status=bogus").status_code == 422


def test_cancel_gives_points_and_stock_back(api):
    m = member_with(api, 1000)
    r = reward(api, cost_points=400, stock=3)
    c = claimed(api, m, r["id"])
    assert points(api, m)["available"] == 600
    answer = api.post(f"/v1/coupons/{c['code'].lower()}/cancel", {"reason": "changed her mind"}, role="agent")
    assert answer.status_code == 200, answer.text
    assert "Idempotent-Replayed" not in answer.headers
    body = answer.json()
    assert body["status"] == "cancelled"
    assert body["cancelled_at"] is not None
    assert {k: v for k, v in body.items() if k not in ("status", "cancelled_at")} == {
        k: v for k, v in c.items() if k not in ("status", "cancelled_at")
    }
    p = points(api, m)
    assert (p["available"], p["redeemed"]) == (1000, 0)
    entry = ledger(api, m)[0]
    assert (entry["kind"], entry["points"], entry["balance_after"]) == ("restore", 400, 1000)
    assert entry["reason"] == f"coupon {c['code']} cancelled: changed her mind"
    assert (get_reward(api, r["id"])["stock"], get_reward(api, r["id"])["claimed"]) == (3, 0)

    before = state(api)
    again = api.post(f"/v1/coupons/{c['code']}/cancel", role="admin")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert state(api) == before
    tx = {"external_id": "void", "member_id": m, "total": "100.00", "coupons": [c["code"]]}
    assert_problem(api.post("/v1/transactions", tx, role="cashier"), 409, "coupon_not_applicable")
    assert_problem(api.post("/v1/coupons/AAAA-AAAA-AAAA/cancel", role="agent"), 404, "not_found")
    assert state(api) == before
    assert [x["code"] for x in api.get(f"/v1/members/{m}/coupons?status=cancelled").json()["items"]] == [c["code"]]
    audit = api.get("/v1/audit", params={"entity_type": "member", "entity_id": m}).json()["items"]
    assert [a["action"] for a in audit][:2] == ["coupon.cancel", "coupon.claim"]
    assert_ledger_clean(api)


def test_cancel_after_the_points_were_spent_elsewhere(api):
    m = member_with(api, 500)
    c = claimed(api, m, reward(api, cost_points=500)["id"])
    assert points(api, m)["available"] == 0
    assert api.post(f"/v1/coupons/{c['code']}/cancel", role="agent").status_code == 200
    r = api.post(f"/v1/members/{m}/points/redemptions", {"external_id": "spend-all", "points": 500}, role="agent")
    assert r.status_code == 201
    assert points(api, m)["available"] == 0
    assert_ledger_clean(api)


def test_used_coupon_cannot_be_cancelled(api):
    m = member_with(api, 500)
    c = claimed(api, m, reward(api, kind="amount_discount", value="50", cost_points=100)["id"])
    tx = {"external_id": "use", "member_id": m, "total": "100.00", "coupons": [c["code"]]}
    assert api.post("/v1/transactions", tx, role="cashier").status_code == 201
    before = state(api)
    assert_problem(api.post(f"/v1/coupons/{c['code']}/cancel", role="agent"), 409, "coupon_used")
    assert state(api) == before


def test_member_wallet_lists_newest_first_and_pages(api):
    m = member_with(api, 1000)
    other = member_with(api, 1000)
    r = reward(api, cost_points=10)
    codes = [claimed(api, m, r["id"])["code"] for _ in range(3)]
    claimed(api, other, r["id"])
    page1 = api.get(f"/v1/members/{m}/coupons?limit=2", role="cashier").json()
    assert [c["code"] for c in page1["items"]] == codes[::-1][:2]
    page2 = api.get(f"/v1/members/{m}/coupons?limit=2&cursor={page1['next_cursor']}").json()
    assert ([c["code"] for c in page2["items"]], page2["next_cursor"]) == ([codes[0]], None)
    assert len(api.get(f"/v1/members/{m}/coupons?status=issued").json()["items"]) == 3
    assert api.get(f"/v1/members/{m}/coupons?status=used").json()["items"] == []
    assert_problem(api.get(f"/v1/members/{uuid.uuid4()}/coupons"), 404, "not_found")


def test_member_catalogue(api):
    api.put("/v1/tiers", LADDER, role="marketer")
    m = member_with(api, 150)
    cheap = reward(api, name="cheap", cost_points=100, limit_per_member=1)
    dear = reward(api, name="dear", cost_points=1000)
    gold = reward(api, name="gold", cost_points=10, tiers=["gold"])
    gone = reward(api, name="gone", cost_points=10, stock=0)
    reward(api, name="off", cost_points=10, active=False)
    r = api.get(f"/v1/members/{m}/rewards", role="cashier")
    assert r.status_code == 200, r.text
    seen = {i["name"]: (i["eligible"], i["affordable"], i["reason"], i["claimed_by_member"]) for i in r.json()["items"]}
    assert seen == {
        "cheap": (True, True, None, 0),
        "dear": (True, False, "insufficient_points", 0),
        "gold": (False, True, "not_eligible", 0),
        "gone": (False, True, "out_of_stock", 0),
    }
    claimed(api, m, cheap["id"])
    items = {i["name"]: i for i in api.get(f"/v1/members/{m}/rewards").json()["items"]}
    assert (items["cheap"]["eligible"], items["cheap"]["reason"], items["cheap"]["claimed_by_member"]) == (
        False,
        "limit_reached",
        1,
    )
    assert items["cheap"]["stock"] is None and items["cheap"]["claimed"] == 1
    assert (items["dear"]["id"], items["gold"]["id"], items["gone"]["id"]) == (dear["id"], gold["id"], gone["id"])
    api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent")
    assert {i["reason"] for i in api.get(f"/v1/members/{m}/rewards").json()["items"]} == {"member_blocked"}
    assert_problem(api.get(f"/v1/members/{uuid.uuid4()}/rewards"), 404, "not_found")


def test_qr_and_barcode_images(api):
    m = member_with(api, 100)
    c = claimed(api, m, reward(api, cost_points=10)["id"])
    squeezed = c["code"].replace("-", "")
    for kind in ("qr", "barcode"):
        r = api.get(f"/v1/coupons/{c['code'].lower()}/{kind}.svg", role="cashier")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(r.content)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(root.attrib["width"].removesuffix("mm")) > 10
        assert_problem(api.get(f"/v1/coupons/AAAA-AAAA-AAAA/{kind}.svg"), 404, "not_found")
        assert_problem(api.get(f"/v1/coupons/{c['code']}/{kind}.svg", role=None), 401, "unauthorized")
    barcode = ET.fromstring(api.get(f"/v1/coupons/{squeezed}/barcode.svg").content)
    texts = [t.text for t in barcode.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [c["code"]]
    # Code 128: start symbol, 11 modules per character and a check symbol, then the stop symbol.
    bars = list(barcode.iter("{http://www.w3.org/2000/svg}rect"))
    assert len(bars) > 3 * len(squeezed)


def test_openapi_documents_the_endpoints(api):
    paths = api.get("/openapi.json", role=None).json()["paths"]
    for path, method in [
        ("/v1/rewards", "post"),
        ("/v1/rewards", "get"),
        ("/v1/rewards/{reward_id}", "get"),
        ("/v1/rewards/{reward_id}", "patch"),
        ("/v1/members/{member_id}/rewards/{reward_id}/claims", "post"),
        ("/v1/members/{member_id}/rewards", "get"),
        ("/v1/members/{member_id}/coupons", "get"),
        ("/v1/coupons/{code}", "get"),
        ("/v1/coupons/{code}/cancel", "post"),
        ("/v1/coupons/{code}/qr.svg", "get"),
        ("/v1/coupons/{code}/barcode.svg", "get"),
    ]:
        responses = paths[path][method]["responses"]
        assert {"401", "403"} <= set(responses), (path, method)
    assert "image/svg+xml" in paths["/v1/coupons/{code}/qr.svg"]["get"]["responses"]["200"]["content"]


# Real concurrency ---------------------------------------------------------------------------------


class Live:
    """A real server on the test's database (two workers on PostgreSQL) and an admin client."""

    def __init__(self, server: LiveServer, key: str) -> None:
        self.client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def member(self, points: int) -> str:
        m = self.ok(
            "/v1/members",
            {
                "first_name": "Ivan",
                "last_name": "Racer",
                "phone": f"+7918{uuid.uuid4().int % 10**7:07d}",
                "consents": {"program_rules": True},
            },
        )
        if points:
            self.ok(
                f"/v1/members/{m['id']}/points/adjustments",
                {"external_id": f"open-{m['id']}", "points": points, "reason": "opening balance"},
            )
        return str(m["id"])

    def fire(self, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str | None]]:
        """All calls at once from as many threads; (status, problem code) in the calls' order."""
        start = threading.Barrier(len(calls))

        def send(call: tuple[str, dict[str, Any]]) -> tuple[int, str | None]:
            r = self.client.post(call[0], json=call[1])
            return r.status_code, r.json().get("code") if r.status_code >= 400 else None

        with ThreadPoolExecutor(len(calls), initializer=start.wait, initargs=(30,)) as pool:
            return list(pool.map(send, calls))


@pytest.fixture
def live(db_url: str, db: Database, tmp_path: Path) -> Iterator[Live]:
    _, key = db.write(lambda s: access.create_key(s, SYSTEM, role=Role.ADMIN, name="reward races"))
    server = LiveServer(db_url, TEST_SECRET, tmp_path, workers=2 if db.dialect == "postgresql" else 1)
    server.start()
    live = Live(server, key)
    try:
        yield live
    finally:
        live.client.close()
        server.stop()


def _count(db: Database, stmt: Any) -> int:
    return int(db.read(lambda s: s.scalar(stmt)) or 0)


@pytest.mark.slow
def test_racing_claims_take_stock_and_limits_once(live: Live, db: Database) -> None:
    last_one = live.ok(
        "/v1/rewards", {"name": "Last one", "kind": "gift", "cost_points": 100, "stock": 1, "valid_days": 5}
    )
    members = [live.member(100) for _ in range(8)]
    answers = live.fire(
        [(f"/v1/members/{m}/rewards/{last_one['id']}/claims", {"external_id": f"race-{m}"}) for m in members]
    )
    assert Counter(answers) == Counter({(201, None): 1, (409, "out_of_stock"): 7})
    redeemed = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "redeem")
    assert _count(db, redeemed) == 1
    assert _count(db, select(func.count()).select_from(Coupon)) == 1
    after = live.client.get(f"/v1/rewards/{last_one['id']}").json()
    assert (after["stock"], after["claimed"]) == (0, 1)

    twice = live.ok(
        "/v1/rewards", {"name": "Twice", "kind": "gift", "cost_points": 10, "limit_per_member": 2, "valid_days": 5}
    )
    m = live.member(1000)
    answers = live.fire(
        [(f"/v1/members/{m}/rewards/{twice['id']}/claims", {"external_id": f"limit-{i}"}) for i in range(8)]
    )
    assert Counter(answers) == Counter({(201, None): 2, (409, "limit_reached"): 6})
    assert live.client.get(f"/v1/members/{m}/points").json()["available"] == 980
    checked, mismatches = db.read(verify)
    assert (mismatches, checked) == ([], 9)


@pytest.mark.slow
def test_racing_purchases_use_a_coupon_once(live: Live, db: Database) -> None:
    r = live.ok(
        "/v1/rewards",
        {"name": "Fifty off", "kind": "amount_discount", "value": "50", "cost_points": 0, "valid_days": 5},
    )
    m = live.member(0)
    code = live.ok(f"/v1/members/{m}/rewards/{r['id']}/claims", {"external_id": "the-coupon"})["code"]
    calls = [
        ("/v1/transactions", {"external_id": f"buy-{i}", "member_id": m, "total": "100.00", "coupons": [code]})
        for i in range(8)
    ]
    answers = live.fire(calls)
    assert Counter(answers) == Counter({(201, None): 1, (409, "coupon_used"): 7})
    assert _count(db, select(func.count()).select_from(Transaction)) == 1
    won = db.read(lambda s: s.scalars(select(Transaction)).one())
    assert (won.discount_minor, won.amount_due_minor) == (5000, 5000)
    used = live.client.get(f"/v1/coupons/{code}").json()
    assert (used["status"], used["transaction_id"], used["discount"]) == ("used", str(won.id), "50.00")


def test_a_member_s_coupons_are_listed_in_the_same_few_queries_however_many(api):
    wash, oil = reward(api, name="Car wash")["id"], reward(api, name="Oil change")["id"]
    few, many = member_with(api, 100), member_with(api, 600)
    claimed(api, few, wash)
    for i in range(6):
        claimed(api, many, (wash, oil)[i % 2])

    def listing(member_id: str) -> tuple[list[str], int]:
        statements: list[str] = []
        listen = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
        event.listen(api.db.engine, "before_cursor_execute", listen)
        try:
            coupons, _ = api.db.read(
                lambda s: rewards.member_coupons(s, uuid.UUID(member_id), status=None, limit=50, cursor=None)
            )
        finally:
            event.remove(api.db.engine, "before_cursor_execute", listen)
        return [c.reward_name for c in coupons], len(statements)

    names, queries = listing(many)
    assert sorted(names) == ["Car wash"] * 3 + ["Oil change"] * 3
    assert (listing(few)[0], listing(few)[1]) == (["Car wash"], queries)
    assert [c["reward_name"] for c in api.get(f"/v1/members/{many}/coupons").json()["items"]] == names
