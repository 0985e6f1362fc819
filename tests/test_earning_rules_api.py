"""/v1/earning-rules: create, read, change, delete, validation per kind, roles, and their effect on earning."""

from __future__ import annotations

from typing import Any

from tests.helpers import assert_problem, state

UNKNOWN = "01a20885-0000-7000-8000-000000000000"
RULE_KEYS = {
    "id",
    "name",
    "kind",
    "points",
    "per_amount",
    "category",
    "sku",
    "factor",
    "event_type",
    "max_points",
    "active",
    "conditions",
    "created_at",
    "updated_at",
}
NO_CONDITIONS = {
    "starts_at": None,
    "ends_at": None,
    "weekdays": None,
    "channels": None,
    "locations": None,
    "tiers": None,
    "segments": None,
    "min_total": None,
}


def create(api: Any, role: str = "marketer", **body: Any) -> Any:
    return api.post("/v1/earning-rules", body, role=role)


def created(api: Any, **body: Any) -> dict[str, Any]:
    r = create(api, **body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def without_times(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k not in ("id", "created_at", "updated_at")}


def earned(api: Any, external_id: str, total: str = "1000.00", **body: Any) -> int:
    if "member_id" not in body:
        body["member_id"] = api.enrol()["id"]
    r = api.post("/v1/transactions", {"external_id": external_id, "total": total, **body}, role="cashier")
    assert r.status_code == 201, r.text
    return int(r.json()["points_earned"])


# Create and read --------------------------------------------------------------------------------


def test_create_spend_rule_and_read_it_back(api):
    r = create(api, name="Base earning", kind="spend", points=1, per_amount="100")
    assert r.status_code == 201, r.text
    rule = r.json()
    assert set(rule) == RULE_KEYS
    assert without_times(rule) == {
        "name": "Base earning",
        "kind": "spend",
        "points": 1,
        "per_amount": "100.00",
        "category": None,
        "sku": None,
        "factor": None,
        "event_type": None,
        "max_points": None,
        "active": True,
        "conditions": NO_CONDITIONS,
    }
    got = api.get(f"/v1/earning-rules/{rule['id']}", role="analyst")
    assert got.status_code == 200
    assert got.json() == rule


EACH_KIND = [
    (
        {"kind": "category", "points": 5, "per_amount": "100.00", "category": "oil"},
        {"category": "oil", "per_amount": "100.00", "points": 5},
    ),
    (
        {"kind": "category", "points": 5, "per_amount": "50.00", "category": ["oil", "filters"], "max_points": 300},
        {"category": ["oil", "filters"], "per_amount": "50.00", "max_points": 300},
    ),
    ({"kind": "sku", "points": 10, "sku": "FILTER"}, {"sku": "FILTER", "per_amount": None}),
    ({"kind": "sku", "points": 2, "sku": ["WASH", "WAX"], "per_amount": "200.00"}, {"sku": ["WASH", "WAX"]}),
    ({"kind": "visit", "points": 25}, {"points": 25}),
    ({"kind": "multiplier", "factor": "1.5"}, {"factor": "1.5", "points": 0}),
    ({"kind": "multiplier", "factor": "2", "category": "oil"}, {"factor": "2", "category": "oil"}),
    ({"kind": "event", "points": 50, "event_type": "survey"}, {"event_type": "survey"}),
    ({"kind": "welcome", "points": 100}, {"points": 100}),
    ({"kind": "birthday", "points": 300}, {"points": 300}),
    ({"kind": "referral", "points": 150}, {"points": 150}),
]


def test_create_each_kind(api, subtests):
    for body, expected in EACH_KIND:
        with subtests.test(msg=str(body)):
            rule = created(api, name="r", **body)
            assert rule["kind"] == body["kind"]
            for key, value in expected.items():
                assert rule[key] == value, key
            assert api.get(f"/v1/earning-rules/{rule['id']}").json() == rule


def test_conditions_round_trip(api):
    conditions = {
        "starts_at": "2026-05-01T10:00:00+03:00",
        "ends_at": "2026-06-01T00:00:00Z",
        "weekdays": [6, 7, 6],
        "channels": ["pos", "web"],
        "locations": ["MSK-01"],
        "tiers": ["gold"],
        "segments": ["vip", "regular"],
        "min_total": "1500",
    }
    rule = created(api, name="Weekend", kind="spend", points=2, per_amount="100.00", conditions=conditions)
    c = rule["conditions"]
    assert c["weekdays"] == [6, 7]
    assert c["channels"] == ["pos", "web"]
    assert c["locations"] == ["MSK-01"]
    assert c["tiers"] == ["gold"]
    assert c["segments"] == ["vip", "regular"]
    assert c["min_total"] == "1500.00"
    assert c["starts_at"] == "2026-05-01T10:00:00+03:00"
    assert c["ends_at"] == "2026-06-01T00:00:00Z"
    assert api.get(f"/v1/earning-rules/{rule['id']}").json()["conditions"] == c


# Validation -------------------------------------------------------------------------------------


INVALID = [
    ({"kind": "spend", "per_amount": "100.00"}, "points"),
    ({"kind": "spend", "points": 0, "per_amount": "100.00"}, "points"),
    ({"kind": "spend", "points": -1, "per_amount": "100.00"}, "points"),
    ({"kind": "spend", "points": 1}, "per_amount"),
    ({"kind": "spend", "points": 1, "per_amount": "0"}, "per_amount"),
    ({"kind": "spend", "points": 1, "per_amount": "-10.00"}, "per_amount"),
    ({"kind": "spend", "points": 1, "per_amount": "10.001"}, "per_amount"),
    ({"kind": "spend", "points": 1, "per_amount": "ten"}, "per_amount"),
    ({"kind": "spend", "points": 1, "per_amount": "10.00", "category": "oil"}, "category"),
    ({"kind": "category", "points": 1, "per_amount": "10.00"}, "category"),
    ({"kind": "category", "points": 1, "category": "oil"}, "per_amount"),
    ({"kind": "category", "per_amount": "10.00", "category": "oil"}, "points"),
    ({"kind": "sku", "points": 1}, "sku"),
    ({"kind": "sku", "sku": "A"}, "points"),
    ({"kind": "visit"}, "points"),
    ({"kind": "visit", "points": 5, "per_amount": "10.00"}, "per_amount"),
    ({"kind": "multiplier"}, "factor"),
    ({"kind": "multiplier", "factor": "0"}, "factor"),
    ({"kind": "multiplier", "factor": "-1.5"}, "factor"),
    ({"kind": "event", "points": 5}, "event_type"),
    ({"kind": "event", "event_type": "survey"}, "points"),
    ({"kind": "welcome"}, "points"),
    ({"kind": "birthday", "points": 0}, "points"),
    ({"kind": "referral"}, "points"),
    ({"kind": "welcome", "points": 5, "sku": "A"}, "sku"),
    ({"kind": "cashback", "points": 5}, "kind"),
    ({"points": 5}, "kind"),
    ({"kind": "visit", "points": 5, "max_points": -1}, "max_points"),
    ({"kind": "visit", "points": 5, "colour": "red"}, "colour"),
    ({"kind": "visit", "points": 5, "conditions": {"weekdays": [0]}}, "conditions.weekdays.0"),
    ({"kind": "visit", "points": 5, "conditions": {"weekdays": [8]}}, "conditions.weekdays.0"),
    ({"kind": "visit", "points": 5, "conditions": {"starts_at": "2026-05-01T10:00:00"}}, "conditions.starts_at"),
    (
        {
            "kind": "visit",
            "points": 5,
            "conditions": {"starts_at": "2026-05-01T10:00:00Z", "ends_at": "2026-05-01T10:00:00Z"},
        },
        "conditions.ends_at",
    ),
    ({"kind": "visit", "points": 5, "conditions": {"min_total": "-1"}}, "conditions.min_total"),
    ({"kind": "visit", "points": 5, "conditions": {"colour": "red"}}, "conditions.colour"),
]


def test_validation_per_kind(api, subtests):
    before = state(api)
    for body, field in INVALID:
        with subtests.test(msg=str(body)):
            assert_problem(create(api, name="bad", **body), 422, "validation_error", field=field)
    assert state(api) == before


def test_name_is_required(api):
    assert_problem(create(api, kind="visit", points=5), 422, "validation_error", field="name")
    assert_problem(create(api, name="  ", kind="visit", points=5), 422, "validation_error", field="name")


# Roles ------------------------------------------------------------------------------------------


def test_marketer_and_admin_write(api, subtests):
    for role in ("marketer", "admin"):
        with subtests.test(msg=role):
            r = create(api, role=role, name="v", kind="visit", points=5)
            assert r.status_code == 201
            rule = r.json()
            assert api.patch(f"/v1/earning-rules/{rule['id']}", {"points": 6}, role=role).json()["points"] == 6
            assert api.delete(f"/v1/earning-rules/{rule['id']}", role=role).status_code == 204


def test_other_roles_cannot_write(api, subtests):
    rule = created(api, name="v", kind="visit", points=5)
    before = state(api)
    for role in ("cashier", "agent", "analyst"):
        with subtests.test(msg=role):
            assert_problem(create(api, role=role, name="v", kind="visit", points=5), 403, "forbidden")
            assert_problem(api.patch(f"/v1/earning-rules/{rule['id']}", {"points": 6}, role=role), 403, "forbidden")
            assert_problem(api.delete(f"/v1/earning-rules/{rule['id']}", role=role), 403, "forbidden")
    assert state(api) == before


def test_who_reads_rules(api, subtests):
    rule = created(api, name="v", kind="visit", points=5)
    for role, status in (("analyst", 200), ("marketer", 200), ("admin", 200), ("cashier", 403), ("agent", 403)):
        with subtests.test(msg=role):
            assert api.get("/v1/earning-rules", role=role).status_code == status
            assert api.get(f"/v1/earning-rules/{rule['id']}", role=role).status_code == status


def test_no_key_is_401(api):
    assert_problem(api.get("/v1/earning-rules", role=None), 401, "unauthorized")
    assert_problem(
        api.post("/v1/earning-rules", {"name": "v", "kind": "visit", "points": 5}, role=None), 401, "unauthorized"
    )


# List, change, delete ---------------------------------------------------------------------------


def test_list_filters_and_pages(api):
    ids = [created(api, name=f"v{i}", kind="visit", points=i + 1)["id"] for i in range(3)]
    spend = created(api, name="s", kind="spend", points=1, per_amount="10.00", active=False)
    r = api.get("/v1/earning-rules", role="analyst")
    assert r.status_code == 200
    body = r.json()
    assert [x["id"] for x in body["items"]] == [*ids, spend["id"]]
    assert body["next_cursor"] is None
    assert [x["id"] for x in api.get("/v1/earning-rules", params={"kind": "spend"}).json()["items"]] == [spend["id"]]
    assert [x["id"] for x in api.get("/v1/earning-rules", params={"active": "false"}).json()["items"]] == [spend["id"]]
    first = api.get("/v1/earning-rules", params={"limit": 2}).json()
    assert [x["id"] for x in first["items"]] == ids[:2]
    rest = api.get("/v1/earning-rules", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [x["id"] for x in rest["items"]] == [ids[2], spend["id"]]
    assert rest["next_cursor"] is None


def test_patch_changes_only_what_is_given(api):
    rule = created(api, name="Base", kind="spend", points=1, per_amount="100.00", conditions={"channels": ["pos"]})
    r = api.patch(f"/v1/earning-rules/{rule['id']}", {"points": 3, "name": "Base ×3"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["points"], out["name"], out["per_amount"]) == (3, "Base ×3", "100.00")
    assert out["conditions"]["channels"] == ["pos"]
    assert out["created_at"] == rule["created_at"]
    assert out["updated_at"] >= rule["updated_at"]
    # conditions are replaced as a whole
    out = api.patch(f"/v1/earning-rules/{rule['id']}", {"conditions": {"weekdays": [1]}}).json()
    assert out["conditions"] == NO_CONDITIONS | {"weekdays": [1]}
    assert api.get(f"/v1/earning-rules/{rule['id']}").json() == out


def test_patch_that_breaks_the_rule_is_refused(api):
    rule = created(api, name="Base", kind="spend", points=1, per_amount="100.00")
    mult = created(api, name="x2", kind="multiplier", factor="2")
    before = state(api)
    assert_problem(
        api.patch(f"/v1/earning-rules/{rule['id']}", {"per_amount": None}), 422, "validation_error", field="per_amount"
    )
    assert_problem(api.patch(f"/v1/earning-rules/{rule['id']}", {"points": 0}), 422, "validation_error", field="points")
    assert_problem(
        api.patch(f"/v1/earning-rules/{rule['id']}", {"kind": "visit"}), 422, "validation_error", field="kind"
    )
    assert_problem(
        api.patch(f"/v1/earning-rules/{mult['id']}", {"factor": "0"}), 422, "validation_error", field="factor"
    )
    assert_problem(api.patch(f"/v1/earning-rules/{UNKNOWN}", {"points": 2}), 404, "not_found")
    assert state(api) == before
    assert api.get(f"/v1/earning-rules/{rule['id']}").json() == rule


def test_delete_then_get_is_404(api):
    rule = created(api, name="v", kind="visit", points=5)
    r = api.delete(f"/v1/earning-rules/{rule['id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert_problem(api.get(f"/v1/earning-rules/{rule['id']}"), 404, "not_found")
    assert_problem(api.delete(f"/v1/earning-rules/{rule['id']}"), 404, "not_found")
    assert_problem(api.patch(f"/v1/earning-rules/{rule['id']}", {"points": 1}), 404, "not_found")
    assert api.get("/v1/earning-rules").json()["items"] == []
    assert_problem(api.get(f"/v1/earning-rules/{UNKNOWN}"), 404, "not_found")
    assert_problem(api.get("/v1/earning-rules/not-a-uuid"), 422, "validation_error")


# Effect on earning ------------------------------------------------------------------------------


def test_inactive_deleted_and_reactivated_rules(api):
    base = created(api, name="Base", kind="spend", points=1, per_amount="100.00")
    off = created(api, name="Off", kind="visit", points=50, active=False)
    gone = created(api, name="Gone", kind="visit", points=70)
    api.delete(f"/v1/earning-rules/{gone['id']}")
    # 1000.00 / 100.00 × 1
    assert earned(api, "t1") == 10
    api.patch(f"/v1/earning-rules/{off['id']}", {"active": True})
    assert earned(api, "t2") == 60
    api.patch(f"/v1/earning-rules/{base['id']}", {"active": False})
    assert earned(api, "t3") == 50
    api.patch(f"/v1/earning-rules/{base['id']}", {"points": 4, "active": True})
    # 10 × 4 + 50
    assert earned(api, "t4") == 90


def test_conditions_decide_earning(api):
    created(
        api,
        name="MSK web promo",
        kind="spend",
        points=1,
        per_amount="100.00",
        max_points=8,
        conditions={"channels": ["web"], "locations": ["MSK-01"], "min_total": "500.00"},
    )
    assert earned(api, "t1", channel="web", location="MSK-01") == 8  # 10, capped at 8
    assert earned(api, "t2", channel="pos", location="MSK-01") == 0
    assert earned(api, "t3", channel="web", location="SPB-01") == 0
    assert earned(api, "t4", total="499.99", channel="web", location="MSK-01") == 0
    assert earned(api, "t5", total="500.00", channel="web", location="MSK-01") == 5


def test_tier_condition(api):
    created(api, name="Gold only", kind="visit", points=9, conditions={"tiers": ["gold"]})
    created(api, name="Members", kind="visit", points=1, conditions={"tiers": ["member"]})
    # every member starts in the base tier "member"
    assert earned(api, "t1") == 1
