"""Points through the API: balance, ledger, adjustments, redemptions, events and the welcome bonus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from patron.ledger.verify import verify
from tests.helpers import assert_problem, state

ENTRY_KEYS = {
    "id",
    "kind",
    "points",
    "balance_after",
    "created_at",
    "transaction_id",
    "rule_id",
    "reason",
    "expires_at",
}
UNKNOWN = "01a20885-0000-7000-8000-000000000000"


def rule(api: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("name", body["kind"])
    r = api.post("/v1/earning-rules", body, role="marketer")
    assert r.status_code == 201, r.text
    return dict(r.json())


def points(api: Any, member_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/members/{member_id}/points", role="cashier")
    assert r.status_code == 200, r.text
    return dict(r.json())


def ledger(api: Any, member_id: str, **query: Any) -> dict[str, Any]:
    r = api.get(f"/v1/members/{member_id}/ledger", role="cashier", params=query)
    assert r.status_code == 200, r.text
    return dict(r.json())


def adjust(
    api: Any, member_id: str, points_: int, external_id: str, role: str = "agent", reason: str = "goodwill"
) -> Any:
    return api.post(
        f"/v1/members/{member_id}/points/adjustments",
        {"external_id": external_id, "points": points_, "reason": reason},
        role=role,
    )


def redeem(api: Any, member_id: str, points_: int, external_id: str, role: str = "agent", **more: Any) -> Any:
    return api.post(
        f"/v1/members/{member_id}/points/redemptions",
        {"external_id": external_id, "points": points_, **more},
        role=role,
    )


def event(api: Any, member_id: str, type_: str, external_id: str, role: str = "cashier", **more: Any) -> Any:
    return api.post(
        "/v1/events", {"external_id": external_id, "member_id": member_id, "type": type_, **more}, role=role
    )


def assert_ledger_consistent(api: Any) -> None:
    checked, mismatches = api.db.read(verify)
    assert checked > 0
    assert mismatches == []


# Balance ----------------------------------------------------------------------------------------


def test_a_new_member_has_nothing(api):
    m = api.enrol()
    assert points(api, m["id"]) == {
        "available": 0,
        "pending": 0,
        "lifetime_earned": 0,
        "redeemed": 0,
        "expired": 0,
        "expiring": [],
    }
    assert ledger(api, m["id"]) == {"items": [], "next_cursor": None}


def test_points_and_ledger_of_unknown_member_are_404(api):
    assert_problem(api.get(f"/v1/members/{UNKNOWN}/points"), 404, "not_found")
    assert_problem(api.get(f"/v1/members/{UNKNOWN}/ledger"), 404, "not_found")


def test_every_role_reads_points_and_ledger(api):
    m = api.enrol()
    for role in ("admin", "agent", "cashier", "analyst", "marketer"):
        assert api.get(f"/v1/members/{m['id']}/points", role=role).status_code == 200, role
        assert api.get(f"/v1/members/{m['id']}/ledger", role=role).status_code == 200, role
    assert_problem(api.get(f"/v1/members/{m['id']}/points", role=None), 401, "unauthorized")
    assert_problem(api.get(f"/v1/members/{m['id']}/ledger", role=None), 401, "unauthorized")


def test_every_kind_of_entry_newest_first_with_balance_after(api):
    r = api.patch("/v1/program", {"expiry": {"policy": "after_days", "days": 30}})
    assert r.status_code == 200
    welcome = rule(api, kind="welcome", name="Welcome", points=100)
    rule(api, kind="spend", points=1, per_amount="10.00")
    m = api.enrol()
    t = api.post(
        "/v1/transactions",
        {"external_id": "t1", "member_id": m["id"], "total": "300.00", "redeem_points": 50},
        role="cashier",
    ).json()
    # 300.00 − 50.00 = 250.00 due → 25 earned
    assert t["points_earned"] == 25
    assert adjust(api, m["id"], 10, "a1").status_code == 201
    back = api.post(f"/v1/transactions/{t['id']}/returns", {"external_id": "ret1", "amount": "125.00"}, role="cashier")
    # share 125 / 250 = 0.5: reverse 12.5 → 13, restore 25
    assert (back.json()["points_reversed"], back.json()["points_restored"]) == (13, 25)
    p = points(api, m["id"])
    # 100 bonus + 25 earned − 13 reversed; redeemed 50 − 25 restored
    assert (p["available"], p["pending"], p["lifetime_earned"], p["redeemed"], p["expired"]) == (97, 0, 112, 25, 0)
    # the 50 redeemed came from the welcome lot (expiring first), 25 of them came back to it: 75;
    # the purchase's lot 25 − 13 = 12; the adjustment 10 — each with its own expiry, soonest first
    assert [x["points"] for x in p["expiring"]] == [75, 12, 10]
    expiries = [datetime.fromisoformat(x["expires_at"]) for x in p["expiring"]]
    assert expiries == sorted(expiries)
    result = api.post("/v1/jobs/expire-points/run", {"as_of": (datetime.now(UTC) + timedelta(days=31)).isoformat()})
    assert result.json()["result"] == {"members": 1, "points": 97}

    items = ledger(api, m["id"])["items"]
    assert all(set(e) == ENTRY_KEYS for e in items)
    assert [(e["kind"], e["points"], e["balance_after"]) for e in items] == [
        ("expire", -97, 0),
        ("restore", 25, 97),
        ("reverse", -13, 72),
        ("adjust", 10, 85),
        ("earn", 25, 75),
        ("redeem", -50, 50),
        ("bonus", 100, 100),
    ]
    by_kind = {e["kind"]: e for e in items}
    assert by_kind["bonus"]["rule_id"] == welcome["id"]
    assert by_kind["adjust"]["reason"] == "goodwill"
    for kind in ("earn", "redeem", "reverse", "restore"):
        assert by_kind[kind]["transaction_id"] == t["id"]
    assert by_kind["adjust"]["transaction_id"] is None
    created = [datetime.fromisoformat(e["created_at"]) for e in items]
    assert created == sorted(created, reverse=True)
    p = points(api, m["id"])
    assert (p["available"], p["expired"], p["expiring"]) == (0, 97, [])
    assert_ledger_consistent(api)


def test_ledger_pages(api):
    m = api.enrol()
    for i in range(7):
        assert adjust(api, m["id"], i + 1, f"a{i}").status_code == 201
    seen = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = ledger(api, m["id"], **query)
        pages += 1
        assert len(page["items"]) <= 3
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    # newest first: 7, 6, … 1; balance_after 28, 21, 15, 10, 6, 3, 1
    assert [e["points"] for e in seen] == [7, 6, 5, 4, 3, 2, 1]
    assert [e["balance_after"] for e in seen] == [28, 21, 15, 10, 6, 3, 1]
    assert seen == ledger(api, m["id"], limit=500)["items"]
    assert_problem(api.get(f"/v1/members/{m['id']}/ledger", params={"cursor": "not-a-cursor"}), 422, "validation_error")
    assert_problem(api.get(f"/v1/members/{m['id']}/ledger", params={"limit": 0}), 422, "validation_error")
    assert_problem(api.get(f"/v1/members/{m['id']}/ledger", params={"limit": 501}), 422, "validation_error")


# Adjustments ------------------------------------------------------------------------------------


def test_adjustment_by_agent_and_admin(api):
    m = api.enrol()
    r = adjust(api, m["id"], 120, "a1", role="agent", reason="apology for the queue")
    assert r.status_code == 201, r.text
    e = r.json()
    assert set(e) == ENTRY_KEYS
    assert (e["kind"], e["points"], e["balance_after"], e["reason"]) == ("adjust", 120, 120, "apology for the queue")
    assert (e["transaction_id"], e["rule_id"], e["expires_at"]) == (None, None, None)
    e = adjust(api, m["id"], -20, "a2", role="admin", reason="typo").json()
    assert (e["kind"], e["points"], e["balance_after"]) == ("adjust", -20, 100)
    p = points(api, m["id"])
    # adjustments are neither earned nor redeemed points
    assert (p["available"], p["lifetime_earned"], p["redeemed"]) == (100, 0, 0)
    assert_ledger_consistent(api)


def test_adjustment_forbidden_to_other_roles(api):
    m = api.enrol()
    before = state(api)
    for role in ("cashier", "marketer", "analyst"):
        assert_problem(adjust(api, m["id"], 10, "a1", role=role), 403, "forbidden")
    assert state(api) == before


def test_adjustment_validation(api):
    m = api.enrol()
    assert adjust(api, m["id"], 10, "seed").status_code == 201
    before = state(api)
    assert_problem(adjust(api, m["id"], 0, "a1"), 422, "validation_error", field="points")
    r = api.post(f"/v1/members/{m['id']}/points/adjustments", {"external_id": "a1", "points": 5}, role="agent")
    assert_problem(r, 422, "validation_error", field="reason")
    assert_problem(adjust(api, UNKNOWN, 5, "a1"), 404, "not_found")
    # taking 11 of 10 would leave the available balance below zero
    assert_problem(adjust(api, m["id"], -11, "a1"), 409, "insufficient_points")
    assert state(api) == before
    assert adjust(api, m["id"], -10, "a1").json()["balance_after"] == 0
    assert_ledger_consistent(api)


def test_adjustment_is_idempotent(api):
    m = api.enrol()
    first = adjust(api, m["id"], 30, "a1")
    after = state(api)
    again = adjust(api, m["id"], 30, "a1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert state(api) == after
    assert_problem(adjust(api, m["id"], 31, "a1"), 409, "idempotency_conflict")
    assert_problem(adjust(api, m["id"], 30, "a1", reason="other"), 409, "idempotency_conflict")
    other = api.enrol()
    assert_problem(adjust(api, other["id"], 30, "a1"), 409, "idempotency_conflict")
    assert points(api, m["id"])["available"] == 30
    assert points(api, other["id"])["available"] == 0


def test_adjustment_is_audited(api):
    m = api.enrol()
    adjust(api, m["id"], 40, "a1", reason="goodwill")
    adjust(api, m["id"], -15, "a2", reason="correction")
    r = api.get("/v1/audit", params={"entity_type": "member", "entity_id": m["id"], "action": "points.adjust"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(a["details"]["points"], a["details"]["reason"]) for a in items] == [(-15, "correction"), (40, "goodwill")]
    assert all(a["actor"]["kind"] == "api_key" for a in items)


# Redemptions ------------------------------------------------------------------------------------


def test_redemption(api):
    m = api.enrol()
    adjust(api, m["id"], 100, "seed")
    r = redeem(api, m["id"], 60, "r1", reason="car wash")
    assert r.status_code == 201, r.text
    e = r.json()
    assert (e["kind"], e["points"], e["balance_after"], e["reason"]) == ("redeem", -60, 40, "car wash")
    p = points(api, m["id"])
    assert (p["available"], p["redeemed"]) == (40, 60)
    assert redeem(api, m["id"], 40, "r2", role="admin").json()["balance_after"] == 0
    assert_ledger_consistent(api)


def test_redemption_refusals_change_nothing(api):
    m = api.enrol()
    adjust(api, m["id"], 100, "seed")
    before = state(api)
    assert_problem(redeem(api, m["id"], 101, "r1"), 409, "insufficient_points")
    assert_problem(redeem(api, m["id"], 0, "r1"), 422, "validation_error", field="points")
    assert_problem(redeem(api, m["id"], -5, "r1"), 422, "validation_error", field="points")
    assert_problem(redeem(api, m["id"], 10, "r1", role="cashier"), 403, "forbidden")
    assert_problem(redeem(api, m["id"], 10, "r1", role="marketer"), 403, "forbidden")
    assert_problem(redeem(api, UNKNOWN, 10, "r1"), 404, "not_found")
    assert state(api) == before
    assert api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"}, role="agent").status_code == 200
    before = state(api)
    assert_problem(redeem(api, m["id"], 10, "r1"), 409, "member_blocked")
    assert state(api) == before
    assert points(api, m["id"])["available"] == 100


def test_redemption_is_idempotent(api):
    m = api.enrol()
    adjust(api, m["id"], 100, "seed")
    first = redeem(api, m["id"], 70, "r1")
    after = state(api)
    # a replay is answered even though 30 points would no longer cover it
    again = redeem(api, m["id"], 70, "r1")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == first.json()
    assert state(api) == after
    assert_problem(redeem(api, m["id"], 10, "r1"), 409, "idempotency_conflict")
    assert points(api, m["id"])["available"] == 30


# Events -----------------------------------------------------------------------------------------


def test_event_rules_give_bonus_points(api):
    survey = rule(api, kind="event", name="Survey", event_type="survey", points=50)
    survey_plus = rule(api, kind="event", name="Survey extra", event_type="survey", points=500, max_points=20)
    rule(api, kind="event", name="Profile", event_type="profile_completed", points=30)
    rule(api, kind="event", name="Off", event_type="survey", points=1000, active=False)
    m = api.enrol()
    r = event(api, m["id"], "survey", "e1")
    assert r.status_code == 201, r.text
    # 50 + min(500, 20)
    assert r.json() == {
        "points_earned": 70,
        "breakdown": [
            {"rule_id": survey["id"], "rule_name": "Survey", "points": 50},
            {"rule_id": survey_plus["id"], "rule_name": "Survey extra", "points": 20},
        ],
        "balance": {"available": 70, "pending": 0},
    }
    entries = ledger(api, m["id"])["items"]
    assert sorted((e["kind"], e["points"], e["rule_id"]) for e in entries) == sorted(
        [("bonus", 50, survey["id"]), ("bonus", 20, survey_plus["id"])]
    )
    assert points(api, m["id"])["lifetime_earned"] == 70
    # an event no rule rewards is accepted and gives nothing
    r = event(api, m["id"], "newsletter_read", "e2")
    assert r.status_code == 201
    assert r.json() == {"points_earned": 0, "breakdown": [], "balance": {"available": 70, "pending": 0}}
    assert len(ledger(api, m["id"])["items"]) == 2
    assert_ledger_consistent(api)


def test_event_rule_conditions_use_the_event_time(api):
    rule(
        api,
        kind="event",
        name="Spring survey",
        event_type="survey",
        points=40,
        conditions={"starts_at": "2026-03-01T00:00:00+03:00", "ends_at": "2026-06-01T00:00:00+03:00"},
    )
    rule(api, kind="event", name="Sunday check-in", event_type="check_in", points=5, conditions={"weekdays": [7]})
    m = api.enrol()
    assert event(api, m["id"], "survey", "e1", occurred_at="2026-02-28T20:59:59+00:00").json()["points_earned"] == 0
    # 21:00 UTC on 28 February is midnight on 1 March in Moscow
    assert event(api, m["id"], "survey", "e2", occurred_at="2026-02-28T21:00:00+00:00").json()["points_earned"] == 40
    assert event(api, m["id"], "survey", "e3", occurred_at="2026-05-31T21:00:00+00:00").json()["points_earned"] == 0
    # Sunday 2026-06-07 23:30 UTC is Monday in Moscow; 20:00 UTC is still Sunday there
    assert event(api, m["id"], "check_in", "e4", occurred_at="2026-06-07T23:30:00+00:00").json()["points_earned"] == 0
    assert event(api, m["id"], "check_in", "e5", occurred_at="2026-06-07T20:00:00+00:00").json()["points_earned"] == 5
    assert points(api, m["id"])["available"] == 45


def test_event_refusals_and_idempotency(api):
    rule(api, kind="event", name="Survey", event_type="survey", points=50)
    m = api.enrol()
    first = event(api, m["id"], "survey", "e1")
    after = state(api)
    again = event(api, m["id"], "survey", "e1")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json() == first.json()
    assert state(api) == after
    assert_problem(event(api, m["id"], "profile_completed", "e1"), 409, "idempotency_conflict")
    assert_problem(event(api, UNKNOWN, "survey", "e2"), 404, "not_found")
    assert_problem(event(api, m["id"], "survey", "e2", role="analyst"), 403, "forbidden")
    assert_problem(event(api, m["id"], "", "e2"), 422, "validation_error", field="type")
    assert state(api) == after
    assert api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"}, role="agent").status_code == 200
    before = state(api)
    assert_problem(event(api, m["id"], "survey", "e3"), 409, "member_blocked")
    assert state(api) == before
    assert points(api, m["id"])["available"] == 50


# Welcome ----------------------------------------------------------------------------------------


def test_welcome_rule_gives_a_bonus_at_enrolment(api):
    welcome = rule(api, kind="welcome", name="Welcome", points=200)
    rule(api, kind="welcome", name="Web welcome", points=50, conditions={"channels": ["web"]})
    rule(api, kind="welcome", name="Old welcome", points=999, active=False)
    m = api.enrol()
    assert m["points"] == {"available": 200, "pending": 0}
    (entry,) = ledger(api, m["id"])["items"]
    assert (entry["kind"], entry["points"], entry["balance_after"], entry["rule_id"]) == (
        "bonus",
        200,
        200,
        welcome["id"],
    )
    assert entry["reason"] == "Welcome"
    # enrolled on the web: both welcome rules
    web = api.enrol(channel="web")
    assert web["points"] == {"available": 250, "pending": 0}
    assert sorted(e["points"] for e in ledger(api, web["id"])["items"]) == [50, 200]
    assert points(api, web["id"])["lifetime_earned"] == 250
    assert_ledger_consistent(api)


def test_no_welcome_rule_no_bonus(api):
    rule(api, kind="event", name="Survey", event_type="survey", points=50)
    m = api.enrol()
    assert m["points"] == {"available": 0, "pending": 0}
    assert ledger(api, m["id"])["items"] == []


def test_external_ids_are_unique_per_kind_of_request(api):
    rule(api, kind="event", name="Survey", event_type="survey", points=50)
    m = api.enrol()
    # the same external_id names four different requests, one of each kind: all of them happen
    assert adjust(api, m["id"], 100, "x1").status_code == 201
    assert redeem(api, m["id"], 30, "x1").status_code == 201
    assert event(api, m["id"], "survey", "x1").status_code == 201
    r = api.post("/v1/transactions", {"external_id": "x1", "member_id": m["id"], "total": "10.00"}, role="cashier")
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers
    # 100 − 30 + 50
    assert points(api, m["id"])["available"] == 120
    assert_ledger_consistent(api)
