"""Black-box contract checks of API.md "Common rules", "Points" and "Running", through HTTP only.

Written from the contract alone: every field the document names, with its type; the list shape and
its paging; 401 and 403 per role as "Common rules" lists them, and that a refused request changes
nothing. The helpers here are shared by test_contract_rewards.py and test_contract_tiers.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from patron.kit import clock
from tests.helpers import assert_problem

ROLES = ("admin", "marketer", "agent", "cashier", "analyst")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MONEY = re.compile(r"^-?\d+\.\d{2}$")  # RUB: two places

# Helpers (HTTP only) ------------------------------------------------------------------------------


def uid(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def is_time(value: Any) -> datetime:
    """An RFC 3339 time with an offset; returned parsed."""
    assert isinstance(value, str) and RFC3339.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None
    return parsed


def is_money(value: Any) -> str:
    assert isinstance(value, str) and MONEY.match(value), value
    return value


def is_int(value: Any) -> int:
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


def is_list_page(body: Any) -> list[Any]:
    assert isinstance(body, dict), body
    assert {"items", "next_cursor"} <= set(body), body
    assert isinstance(body["items"], list)
    assert body["next_cursor"] is None or (isinstance(body["next_cursor"], str) and body["next_cursor"])
    return list(body["items"])


def ok(r: Any, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


def enrol(api: Any, role: str = "cashier") -> str:
    body = {
        "first_name": "Olga",
        "last_name": "Contract",
        "phone": f"+7917{uuid.uuid4().int % 10**7:07d}",
        "consents": {"program_rules": True},
    }
    return str(ok(api.post("/v1/members", body, role=role))["id"])


def give(api: Any, member_id: str, points: int) -> dict[str, Any]:
    body = {"external_id": uid("seed"), "points": points, "reason": "contract test"}
    return ok(api.post(f"/v1/members/{member_id}/points/adjustments", body, role="agent"))


def member(api: Any, points: int = 0) -> str:
    m = enrol(api)
    if points:
        give(api, m, points)
    return m


def balance(api: Any, member_id: str) -> dict[str, Any]:
    return ok(api.get(f"/v1/members/{member_id}/points", role="analyst"), 200)


def ledger(api: Any, member_id: str) -> list[dict[str, Any]]:
    return is_list_page(ok(api.get(f"/v1/members/{member_id}/ledger?limit=500", role="analyst"), 200))


def get_member(api: Any, member_id: str) -> dict[str, Any]:
    return ok(api.get(f"/v1/members/{member_id}", role="analyst"), 200)


def spend_rule(api: Any, points: int = 1, per_amount: str = "1.00") -> None:
    body = {"name": f"{points} per {per_amount}", "kind": "spend", "points": points, "per_amount": per_amount}
    ok(api.post("/v1/earning-rules", body, role="marketer"))


def buy(api: Any, member_id: str, external_id: str | None = None, role: str = "cashier", **body: Any) -> Any:
    body = {"external_id": external_id or uid("t"), "member_id": member_id, **body}
    return api.post("/v1/transactions", body, role=role)


def bought(api: Any, member_id: str, **body: Any) -> dict[str, Any]:
    return ok(buy(api, member_id, **body))


def reward(api: Any, role: str = "marketer", **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Contract reward")
    body.setdefault("kind", "gift")
    body.setdefault("cost_points", 0)
    body.setdefault("valid_days", 30)
    return ok(api.post("/v1/rewards", body, role=role))


def claim(api: Any, member_id: str, reward_id: str, external_id: str | None = None, role: str = "cashier") -> Any:
    path = f"/v1/members/{member_id}/rewards/{reward_id}/claims"
    return api.post(path, {"external_id": external_id or uid("claim")}, role=role)


def member_view(api: Any, member_id: str) -> dict[str, Any]:
    """What a refused request must leave as it was: the points, the whole ledger, the member."""
    m = get_member(api, member_id)
    return {"points": balance(api, member_id), "ledger": ledger(api, member_id), "member": m}


def run_job(api: Any, name: str, as_of: datetime | None = None) -> dict[str, Any]:
    body = {"as_of": as_of.isoformat()} if as_of else {}
    return ok(api.post(f"/v1/jobs/{name}/run", body, role="admin"), 200)


# Auth: 401 ----------------------------------------------------------------------------------------


def test_no_or_unknown_key_is_401_problem(api):
    m = member(api, 100)
    r = reward(api)
    before = member_view(api, m)
    calls = [
        ("GET", "/v1/rewards", None),
        ("POST", "/v1/rewards", {"name": "x", "kind": "gift", "cost_points": 1, "valid_days": 1}),
        ("POST", f"/v1/members/{m}/rewards/{r['id']}/claims", {"external_id": "anon"}),
        ("GET", "/v1/coupons/AAAA-AAAA-AAAA", None),
        ("GET", "/v1/tiers", None),
        ("PUT", "/v1/tiers", {"metric": "points", "window_days": None, "tiers": []}),
        ("GET", "/v1/segments", None),
        ("GET", "/v1/segments/vip/members", None),
        ("POST", "/v1/jobs/requalify-tiers/run", {}),
        ("GET", f"/v1/members/{m}/points", None),
        ("POST", f"/v1/members/{m}/points/adjustments", {"external_id": "anon", "points": 5, "reason": "x"}),
        ("POST", "/v1/transactions", {"external_id": "anon", "member_id": m, "total": "10.00"}),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            answer = api.request(method, path, role=None, json=body, headers=dict(headers))
            assert_problem(answer, 401, "unauthorized")
    assert member_view(api, m) == before
    assert ok(api.get(f"/v1/rewards/{r['id']}"), 200)["stock"] is None


def test_health_needs_no_key(api):
    r = api.get("/health", role=None)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


# Roles: 403 ---------------------------------------------------------------------------------------


def _writes(api: Any) -> dict[str, tuple[str, str, Any, set[str]]]:
    """Each write API.md assigns to roles: (method, path, body, the roles allowed)."""
    m = member(api, 1000)
    r = reward(api)
    config = {"marketer", "admin"}
    till = {"cashier", "agent", "admin"}
    agent = {"agent", "admin"}
    return {
        "create reward": (
            "POST",
            "/v1/rewards",
            {"name": "r", "kind": "gift", "cost_points": 1, "valid_days": 1},
            config,
        ),
        "patch reward": ("PATCH", f"/v1/rewards/{r['id']}", {"name": "renamed"}, config),
        "put tiers": (
            "PUT",
            "/v1/tiers",
            {
                "metric": "points",
                "window_days": None,
                "tiers": [{"code": "base", "name": "Base", "threshold": 0, "multiplier": "1", "benefits": []}],
            },
            config,
        ),
        "create segment": (
            "POST",
            "/v1/segments",
            {"code": "s1", "name": "S", "match": "all", "conditions": [{"field": "visits", "op": "gte", "value": 1}]},
            config,
        ),
        "patch program": ("PATCH", "/v1/program", {"name": "Renamed"}, config),
        "create rule": (
            "POST",
            "/v1/earning-rules",
            {"name": "v", "kind": "visit", "points": 1},
            config,
        ),
        "claim": ("POST", f"/v1/members/{m}/rewards/{r['id']}/claims", {"external_id": "role-claim"}, till),
        "transaction": ("POST", "/v1/transactions", {"external_id": "role-t", "member_id": m, "total": "1.00"}, till),
        "enrol": (
            "POST",
            "/v1/members",
            {"first_name": "A", "last_name": "B", "phone": "+79189990001", "consents": {"program_rules": True}},
            till,
        ),
        "event": ("POST", "/v1/events", {"external_id": "role-e", "member_id": m, "type": "review"}, till),
        "adjust": (
            "POST",
            f"/v1/members/{m}/points/adjustments",
            {"external_id": "role-a", "points": 1, "reason": "r"},
            agent,
        ),
        "redeem": ("POST", f"/v1/members/{m}/points/redemptions", {"external_id": "role-r", "points": 1}, agent),
        "edit member": ("PATCH", f"/v1/members/{m}", {"first_name": "Edited"}, agent),
        "block member": ("POST", f"/v1/members/{m}/block", {"reason": "role test"}, agent),
        "run job": ("POST", "/v1/jobs/refresh-segments/run", {}, {"admin"}),
    }


def test_each_role_is_refused_what_common_rules_do_not_give_it(api):
    writes = _writes(api)
    member_id = writes["claim"][1].split("/")[3]
    reward_id = writes["patch reward"][1].split("/")[-1]
    before = (
        member_view(api, member_id),
        ok(api.get(f"/v1/rewards/{reward_id}"), 200),
        ok(api.get("/v1/tiers"), 200),
        ok(api.get("/v1/segments?limit=500"), 200),
        ok(api.get("/v1/program"), 200),
        ok(api.get("/v1/earning-rules?limit=500"), 200),
    )
    for what, (method, path, body, allowed) in writes.items():
        for role in set(ROLES) - allowed:
            answer = api.request(method, path, role=role, json=body)
            assert answer.status_code == 403, (what, role, answer.text)
            assert_problem(answer, 403, "forbidden")
    after = (
        member_view(api, member_id),
        ok(api.get(f"/v1/rewards/{reward_id}"), 200),
        ok(api.get("/v1/tiers"), 200),
        ok(api.get("/v1/segments?limit=500"), 200),
        ok(api.get("/v1/program"), 200),
        ok(api.get("/v1/earning-rules?limit=500"), 200),
    )
    assert after == before


@pytest.mark.parametrize("role", ["cashier", "agent", "admin"])
def test_till_roles_may_claim_and_buy(api, role):
    writes = _writes(api)
    for what in ("claim", "transaction", "enrol", "event"):
        method, path, body, _ = writes[what]
        assert api.request(method, path, role=role, json=body).status_code == 201, (what, role)


@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agent_rights(api, role):
    writes = _writes(api)
    for what in ("adjust", "redeem", "edit member", "block member"):
        method, path, body, _ = writes[what]
        assert api.request(method, path, role=role, json=body).status_code in (200, 201), (what, role)


@pytest.mark.parametrize("role", ["marketer", "admin"])
def test_configuration_roles(api, role):
    writes = _writes(api)
    for what in ("create reward", "patch reward", "put tiers", "create segment", "patch program", "create rule"):
        method, path, body, _ = writes[what]
        answer = api.request(method, path, role=role, json=body)
        assert answer.status_code in (200, 201), (what, role, answer.text)


def test_every_role_reads_coupons_rewards_members_points_and_transactions(api):
    m = member(api, 100)
    r = reward(api, cost_points=10)
    code = ok(claim(api, m, r["id"]))["code"]
    t = bought(api, m, total="10.00")
    for role in ROLES:
        for path in (
            f"/v1/coupons/{code}",
            "/v1/rewards",
            f"/v1/rewards/{r['id']}",
            f"/v1/members/{m}",
            f"/v1/members/{m}/points",
            f"/v1/members/{m}/ledger",
            f"/v1/transactions/{t['id']}",
        ):
            assert api.get(path, role=role).status_code == 200, (role, path)


@pytest.mark.parametrize("role", ["analyst", "marketer", "admin"])
def test_readers_read_configuration(api, role):
    for path in ("/v1/tiers", "/v1/segments", "/v1/segments/vip/members", "/v1/program", "/v1/earning-rules"):
        assert api.get(path, role=role).status_code == 200, (role, path)


# Problems ----------------------------------------------------------------------------------------


def test_problem_shapes(api):
    m = member(api)
    missing = assert_problem(api.get(f"/v1/rewards/{uuid.uuid4()}"), 404, "not_found")
    assert set(missing) >= {"type", "title", "status", "detail", "code"}
    assert_problem(api.get(f"/v1/members/{uuid.uuid4()}/points"), 404, "not_found")
    assert_problem(api.get("/v1/coupons/AAAA-AAAA-AAAA"), 404, "not_found")
    assert_problem(api.get("/v1/segments/no-such-segment/members"), 404, "not_found")
    assert_problem(api.get("/v1/no-such-route"), 404, "not_found")

    bad = assert_problem(api.post("/v1/rewards", {"kind": "gift"}, role="marketer"), 422, "validation_error")
    assert isinstance(bad["errors"], list) and bad["errors"]
    for e in bad["errors"]:
        assert set(e) >= {"field", "message"}
        assert isinstance(e["field"], str) and isinstance(e["message"], str) and e["message"]
    assert {"name", "cost_points", "valid_days"} <= {e["field"] for e in bad["errors"]}
    # A business refusal is 409 with its own code.
    r = reward(api, cost_points=10)
    assert_problem(claim(api, m, r["id"]), 409, "insufficient_points")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"total": "1e30"}, "total"),
        ({"total": "100000000000000000.00"}, "total"),
        ({"items": [{"sku": "A", "quantity": "1e20", "unit_price": "1e10"}]}, "items.0.quantity"),
        ({"items": [{"sku": "A", "quantity": "1", "unit_price": "1e400"}]}, "items.0.unit_price"),
        ({"items": [{"sku": "A", "quantity": 1, "unit_price": "9999999999999.99"}] * 200}, "items"),
    ],
)
def test_absurd_amounts_are_422_not_500(api, body, field):
    spend_rule(api, 1, "1.00")
    m = member(api, 10)
    code = ok(claim(api, m, reward(api, kind="percent_discount", value="10")["id"]))["code"]
    before = member_view(api, m)
    r = buy(api, m, coupons=[code], **body)
    assert_problem(r, 422, "validation_error", field=field)
    assert member_view(api, m) == before
    assert ok(api.get(f"/v1/coupons/{code}"), 200)["status"] == "issued"


def test_malformed_json_is_422(api):
    r = api.post("/v1/rewards", role="marketer", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "validation_error")


# Lists ---------------------------------------------------------------------------------------------


def test_list_default_limit_is_50_and_max_500(api):
    made = [reward(api, name=f"R{i:02d}")["id"] for i in range(51)]
    first = ok(api.get("/v1/rewards", role="analyst"), 200)
    assert len(is_list_page(first)) == 50
    assert first["next_cursor"]
    rest = ok(api.get("/v1/rewards", params={"cursor": first["next_cursor"]}), 200)
    assert rest["next_cursor"] is None
    seen = [i["id"] for i in first["items"]] + [i["id"] for i in rest["items"]]
    assert sorted(seen) == sorted(made) and len(set(seen)) == 51

    everything = ok(api.get("/v1/rewards?limit=500"), 200)
    assert (len(everything["items"]), everything["next_cursor"]) == (51, None)
    pages, cursor = [], None
    while True:
        page = ok(api.get("/v1/rewards", params={"limit": 20, **({"cursor": cursor} if cursor else {})}), 200)
        pages.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [20, 20, 11]
    for bad in ("501", "0", "-1", "ten"):
        assert_problem(api.get(f"/v1/rewards?limit={bad}"), 422, "validation_error", field="limit")
    assert_problem(api.get("/v1/rewards?cursor=%%%garbage"), 422, "validation_error", field="cursor")


def test_the_ledger_pages_by_50_by_default(api):
    m = member(api)
    for i in range(51):
        give(api, m, i + 1)
    first = ok(api.get(f"/v1/members/{m}/ledger", role="cashier"), 200)
    assert len(first["items"]) == 50 and first["next_cursor"]
    assert [e["points"] for e in first["items"]] == list(range(51, 1, -1))
    rest = ok(api.get(f"/v1/members/{m}/ledger", params={"cursor": first["next_cursor"]}), 200)
    assert ([e["points"] for e in rest["items"]], rest["next_cursor"]) == ([1], None)


def test_every_list_has_the_list_shape(api):
    m = member(api, 300)
    r = reward(api, cost_points=10)
    for _ in range(3):
        ok(claim(api, m, r["id"]))
    for path in (
        "/v1/rewards",
        f"/v1/members/{m}/ledger",
        f"/v1/members/{m}/coupons",
        "/v1/segments",
        "/v1/segments/vip/members",
        "/v1/earning-rules",
        "/v1/members",
    ):
        body = ok(api.get(path), 200)
        is_list_page(body)
        page = ok(api.get(path, params={"limit": 1}), 200)
        assert len(page["items"]) <= 1
        assert_problem(api.get(path, params={"limit": 501}), 422, "validation_error", field="limit")
    # The ledger pages newest first: 3 claims and the opening adjustment.
    one = ok(api.get(f"/v1/members/{m}/ledger", params={"limit": 3}), 200)
    two = ok(api.get(f"/v1/members/{m}/ledger", params={"limit": 3, "cursor": one["next_cursor"]}), 200)
    assert [e["kind"] for e in one["items"] + two["items"]] == ["redeem", "redeem", "redeem", "adjust"]
    assert [e["balance_after"] for e in one["items"] + two["items"]] == [270, 280, 290, 300]
    assert two["next_cursor"] is None


# Points -----------------------------------------------------------------------------------------


def test_points_and_ledger_fields(api):
    spend_rule(api, 1, "10.00")
    m = member(api)
    fresh = balance(api, m)
    named = ("available", "pending", "lifetime_earned", "redeemed", "expired", "expiring")
    assert {k: fresh[k] for k in named} == dict.fromkeys(named[:-1], 0) | {"expiring": []}
    t = bought(api, m, total="1000.00")
    adj = give(api, m, 50)
    assert set(adj) >= {"id", "kind", "points", "balance_after", "created_at"}
    assert (adj["kind"], adj["points"], adj["balance_after"]) == ("adjust", 50, 150)
    assert adj["reason"] == "contract test"
    is_time(adj["created_at"])
    red = ok(api.post(f"/v1/members/{m}/points/redemptions", {"external_id": uid("r"), "points": 30}, role="agent"))
    assert (red["kind"], red["points"], red["balance_after"]) == ("redeem", -30, 120)

    p = balance(api, m)
    for k in ("available", "pending", "lifetime_earned", "redeemed", "expired"):
        is_int(p[k])
    assert (p["available"], p["pending"], p["redeemed"], p["expired"]) == (120, 0, 30, 0)
    assert p["lifetime_earned"] in (100, 150)  # whether an adjustment counts as earned is not said
    assert isinstance(p["expiring"], list)

    entries = ledger(api, m)
    assert [(e["kind"], e["points"], e["balance_after"]) for e in entries] == [
        ("redeem", -30, 120),
        ("adjust", 50, 150),
        ("earn", 100, 100),
    ]
    for e in entries:
        assert set(e) >= {"id", "kind", "points", "balance_after", "created_at"}
        is_int(e["points"])
        is_int(e["balance_after"])
        is_time(e["created_at"])
    assert entries[2]["transaction_id"] == t["id"]


def test_expiring_points_have_rfc3339_times(api):
    assert ok(api.patch("/v1/program", {"expiry": {"policy": "after_days", "days": 30}}), 200)
    spend_rule(api, 1, "1.00")
    m = member(api)
    t = bought(api, m, total="40.00")
    assert t["points_earned"] == 40
    p = balance(api, m)
    assert [e["points"] for e in p["expiring"]] == [40]
    expires = is_time(p["expiring"][0]["expires_at"])
    assert abs(expires - (clock.now() + timedelta(days=30))) < timedelta(minutes=5)
    earn = ledger(api, m)[0]
    assert earn["kind"] == "earn"
    assert is_time(earn["expires_at"]) == expires


def test_adjustment_rules_and_idempotency(api):
    m = member(api, 100)
    path = f"/v1/members/{m}/points/adjustments"
    before = member_view(api, m)
    assert_problem(
        api.post(path, {"external_id": "z", "points": 0, "reason": "r"}, role="agent"),
        422,
        "validation_error",
        field="points",
    )
    assert_problem(
        api.post(path, {"points": 5, "reason": "r"}, role="agent"), 422, "validation_error", field="external_id"
    )
    assert_problem(
        api.post(path, {"external_id": "neg", "points": -101, "reason": "r"}, role="agent"), 409, "insufficient_points"
    )
    assert_problem(
        api.post(
            f"/v1/members/{uuid.uuid4()}/points/adjustments",
            {"external_id": "nf", "points": 1, "reason": "r"},
            role="agent",
        ),
        404,
        "not_found",
    )
    assert member_view(api, m) == before

    body = {"external_id": "adj-1", "points": -40, "reason": "correction"}
    first = api.post(path, body, role="agent")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    after_first = member_view(api, m)
    again = api.post(path, body, role="admin")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json() == first.json()
    assert member_view(api, m) == after_first
    assert_problem(api.post(path, {**body, "points": -41}, role="agent"), 409, "idempotency_conflict")
    assert_problem(api.post(path, {**body, "reason": "other"}, role="agent"), 409, "idempotency_conflict")
    assert member_view(api, m) == after_first
    assert balance(api, m)["available"] == 60


def test_redemption_refusals_change_nothing(api):
    m = member(api, 100)
    path = f"/v1/members/{m}/points/redemptions"
    before = member_view(api, m)
    for bad in (0, -5, "ten"):
        r = api.post(path, {"external_id": f"bad-{bad}", "points": bad}, role="agent")
        assert_problem(r, 422, "validation_error", field="points")
    assert_problem(api.post(path, {"external_id": "too-much", "points": 101}, role="agent"), 409, "insufficient_points")
    ok(api.post(f"/v1/members/{m}/block", {"reason": "fraud"}, role="agent"), 200)
    blocked = member_view(api, m)
    assert_problem(api.post(path, {"external_id": "blocked", "points": 1}, role="agent"), 409, "member_blocked")
    assert member_view(api, m) == blocked
    assert blocked["points"] == before["points"] and blocked["ledger"] == before["ledger"]


def test_external_ids_are_per_kind_of_request(api):
    m = member(api, 500)
    r = reward(api, cost_points=10)
    shared = "shared-id-1"
    assert buy(api, m, external_id=shared, total="10.00").status_code == 201
    assert claim(api, m, r["id"], shared).status_code == 201
    ok(
        api.post(
            f"/v1/members/{m}/points/adjustments", {"external_id": shared, "points": 1, "reason": "r"}, role="agent"
        )
    )
    ok(api.post(f"/v1/members/{m}/points/redemptions", {"external_id": shared, "points": 1}, role="agent"))


# Running: jobs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["release-pending", "expire-points", "requalify-tiers", "refresh-segments", "birthday-bonuses"]
)
def test_each_job_runs_by_hand_with_or_without_as_of(api, name):
    assert api.post(f"/v1/jobs/{name}/run", role="admin").status_code == 200
    assert api.post(f"/v1/jobs/{name}/run", {}, role="admin").status_code == 200
    as_of = clock.now() + timedelta(days=3)
    assert api.post(f"/v1/jobs/{name}/run", {"as_of": as_of.isoformat()}, role="admin").status_code == 200


def test_release_pending_and_expire_points_act_as_of(api):
    ok(api.patch("/v1/program", {"pending_days": 3, "expiry": {"policy": "after_days", "days": 30}}), 200)
    spend_rule(api, 1, "1.00")
    m = member(api)
    bought(api, m, total="100.00")
    assert (balance(api, m)["available"], balance(api, m)["pending"]) == (0, 100)
    run_job(api, "release-pending", as_of=clock.now() + timedelta(days=2))
    assert (balance(api, m)["available"], balance(api, m)["pending"]) == (0, 100)
    run_job(api, "release-pending", as_of=clock.now() + timedelta(days=4))
    assert (balance(api, m)["available"], balance(api, m)["pending"]) == (100, 0)
    run_job(api, "expire-points", as_of=clock.now() + timedelta(days=29))
    assert balance(api, m)["available"] == 100
    run_job(api, "expire-points", as_of=clock.now() + timedelta(days=31))
    p = balance(api, m)
    assert (p["available"], p["expired"], p["expiring"]) == (0, 100, [])
    newest = ledger(api, m)[0]
    assert (newest["kind"], newest["points"], newest["balance_after"]) == ("expire", -100, 0)
    # Run again as of the same instant: nothing more to expire.
    run_job(api, "expire-points", as_of=clock.now() + timedelta(days=31))
    assert len(ledger(api, m)) == 2


def test_birthday_bonuses_on_the_birthday_in_the_programme_time_zone(api):
    rule = {"name": "Happy birthday", "kind": "birthday", "points": 50}
    ok(api.post("/v1/earning-rules", rule, role="marketer"))
    body = {
        "first_name": "Vera",
        "last_name": "July",
        "phone": "+79161112233",
        "birth_date": "1990-07-15",
        "consents": {"program_rules": True},
    }
    m = ok(api.post("/v1/members", body, role="cashier"))["id"]
    # 2028-07-14 21:30 UTC is still the 15th's eve in UTC but already the 15th in Moscow (UTC+3).
    run_job(api, "birthday-bonuses", as_of=datetime.fromisoformat("2028-07-14T20:30:00+00:00"))
    assert ledger(api, m) == []
    run_job(api, "birthday-bonuses", as_of=datetime.fromisoformat("2028-07-14T21:30:00+00:00"))
    entries = ledger(api, m)
    assert [(e["kind"], e["points"], e["balance_after"]) for e in entries] == [("bonus", 50, 50)]
    # Once a year.
    run_job(api, "birthday-bonuses", as_of=datetime.fromisoformat("2028-07-15T12:00:00+03:00"))
    assert len(ledger(api, m)) == 1
    run_job(api, "birthday-bonuses", as_of=datetime.fromisoformat("2028-07-15T21:30:00+00:00"))
    assert len(ledger(api, m)) == 1


def test_times_are_rfc3339(api):
    m = member(api, 10)
    mem = get_member(api, m)
    is_time(mem["enrolled_at"])
    r = reward(api, cost_points=10)
    c = ok(claim(api, m, r["id"]))
    is_time(c["expires_at"])
    assert c["used_at"] is None
    for e in ledger(api, m):
        is_time(e["created_at"])


def test_member_object_names_every_field(api):
    body = {
        "first_name": "Irina",
        "last_name": "Fields",
        "email": "Irina.Fields@Example.COM",
        "phone": "8 (916) 555-12-34",
        "birth_date": "1991-02-03",
        "language": "ru",
        "attributes": {"car": "Kia"},
        "consents": {"program_rules": True, "marketing_email": True},
    }
    created = ok(api.post("/v1/members", body, role="cashier"))
    m = get_member(api, created["id"])
    assert m == created
    named = {
        "id",
        "number",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "language",
        "status",
        "tier",
        "tier_progress",
        "points",
        "segments",
        "referral_code",
        "enrolled_at",
        "consents",
        "attributes",
    }
    assert set(m) >= named, named - set(m)
    assert (m["email"], m["phone"], m["birth_date"], m["language"], m["status"]) == (
        "irina.fields@example.com",
        "+79165551234",
        "1991-02-03",
        "ru",
        "active",
    )
    assert set(m["tier"]) >= {"code", "name"}
    assert set(m["tier_progress"]) >= {"metric", "value", "next_tier", "needed"}
    assert set(m["points"]) >= {"available", "pending"}
    is_int(m["points"]["available"])
    assert isinstance(m["segments"], list)
    assert m["attributes"] == {"car": "Kia"}
    assert m["consents"]["program_rules"] is True
    is_time(m["enrolled_at"])


def test_job_errors(api):
    assert_problem(api.post("/v1/jobs/no-such-job/run", {}, role="admin"), 404, "not_found")
    assert_problem(
        api.post("/v1/jobs/requalify-tiers/run", {"as_of": "yesterday"}, role="admin"),
        422,
        "validation_error",
        field="as_of",
    )
    for role in ("marketer", "agent", "cashier", "analyst"):
        assert_problem(api.post("/v1/jobs/requalify-tiers/run", {}, role=role), 403, "forbidden")


def test_openapi_describes_the_contract(api):
    paths = ok(api.get("/openapi.json", role=None), 200)["paths"]
    for path, method in [
        ("/v1/rewards", "post"),
        ("/v1/rewards", "get"),
        ("/v1/rewards/{reward_id}", "get"),
        ("/v1/rewards/{reward_id}", "patch"),
        ("/v1/members/{member_id}/rewards/{reward_id}/claims", "post"),
        ("/v1/coupons/{code}", "get"),
        ("/v1/tiers", "get"),
        ("/v1/tiers", "put"),
        ("/v1/segments", "post"),
        ("/v1/segments", "get"),
        ("/v1/segments/{code}/members", "get"),
        ("/v1/jobs/{name}/run", "post"),
        ("/v1/members/{member_id}/points", "get"),
        ("/v1/members/{member_id}/ledger", "get"),
        ("/v1/members/{member_id}/points/adjustments", "post"),
        ("/v1/members/{member_id}/points/redemptions", "post"),
        ("/v1/transactions", "post"),
    ]:
        assert method in paths.get(path, {}), (path, method)
