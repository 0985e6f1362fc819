"""Authentication, the role matrix of API.md "Common rules", API keys and the audit trail."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from patron.cards.models import Card
from tests.helpers import ROLES, all_text, assert_problem, dump, state

# Authentication --------------------------------------------------------------------------------


def test_requests_without_a_valid_key_are_401(api):
    m = api.enrol()
    garbage = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer ptr_not-a-key-that-exists"},
        {"Authorization": "Bearer not-even-our-format"},
        {"Authorization": f"Basic {api.key('admin')}"},
        {"Authorization": api.key("admin")},
        {"Authorization": f"Bearer {api.key('admin')}x"},
        {"X-Api-Key": api.key("admin")},
    ]
    before = state(api)
    for headers in garbage:
        for method, path, body in [
            ("GET", f"/v1/members/{m['id']}", None),
            ("POST", "/v1/members", {"first_name": "A", "last_name": "B", "phone": "+79990001122"}),
            ("GET", "/v1/identify?phone=%2B79990001122", None),
            ("PATCH", "/v1/program", {"name": "hijacked"}),
            ("GET", "/v1/audit", None),
        ]:
            r = api.request(method, path, role=None, json=body, headers=dict(headers))
            b = assert_problem(r, 401, "unauthorized")
            assert b["title"] == "Authentication required"
    assert state(api) == before
    r = api.get("/v1/program", role=None, headers={"Authorization": f"bearer {api.key('cashier')}"})
    assert r.status_code == 200


def test_revoked_key_is_401_by_id_or_prefix(api):
    r = api.post("/v1/api-keys", {"role": "cashier", "name": "till 9"})
    assert r.status_code == 201, r.text
    key = r.json()
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert api.get("/v1/program", role=None, headers=dict(auth)).status_code == 200

    r = api.delete(f"/v1/api-keys/{key['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    assert_problem(api.get("/v1/program", role=None, headers=dict(auth)), 401, "unauthorized")
    # Revoking again changes nothing.
    before = state(api)
    assert api.delete(f"/v1/api-keys/{key['id']}").json() == r.json()
    assert state(api) == before
    key = api.post("/v1/api-keys", {"role": "analyst"}).json()
    r = api.delete(f"/v1/api-keys/{key['prefix']}")
    assert r.status_code == 200
    assert r.json()["id"] == key["id"]
    assert_problem(
        api.get("/v1/program", role=None, headers={"Authorization": f"Bearer {key['key']}"}), 401, "unauthorized"
    )
    assert_problem(api.delete(f"/v1/api-keys/{uuid.uuid4()}"), 404, "not_found")
    assert_problem(api.delete("/v1/api-keys/ptr_nothing"), 404, "not_found")


# The role matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    allowed: frozenset[str]
    status: int  # what an allowed role gets
    prepare: Callable[[Any], Call]  # sets up fresh data as admin and names the request

    def __repr__(self) -> str:
        return self.name


CASHIER = frozenset({"cashier", "agent", "admin"})
AGENT = frozenset({"agent", "admin"})
CONFIG = frozenset({"marketer", "admin"})
READ = frozenset(ROLES)
AUDIT = frozenset({"marketer", "analyst", "admin"})
ADMIN = frozenset({"admin"})

_seq = iter(range(10**6))


def _member(api: Any) -> dict[str, Any]:
    return api.enrol()


def _card(api: Any) -> str:
    m = api.enrol()
    return str(api.post(f"/v1/members/{m['id']}/cards", {}).json()["number"])


def _issued(api: Any) -> str:
    return str(api.post("/v1/cards/batch", {"count": 1}).json()["items"][0]["number"])


def _phone() -> str:
    return f"+7925{next(_seq):07d}"


ENDPOINTS = [
    Endpoint("identify", READ, 200, lambda api: Call("GET", "/v1/identify", params={"phone": _member(api)["phone"]})),
    Endpoint(
        "enrol",
        CASHIER,
        201,
        lambda api: Call(
            "POST",
            "/v1/members",
            {"first_name": "A", "last_name": "B", "phone": _phone(), "consents": {"program_rules": True}},
        ),
    ),
    Endpoint("read member", READ, 200, lambda api: Call("GET", f"/v1/members/{_member(api)['id']}")),
    Endpoint("search members", READ, 200, lambda api: Call("GET", "/v1/members", params={"q": "anna"})),
    Endpoint("list member cards", READ, 200, lambda api: Call("GET", f"/v1/members/{_member(api)['id']}/cards")),
    Endpoint(
        "edit member", AGENT, 200, lambda api: Call("PATCH", f"/v1/members/{_member(api)['id']}", {"first_name": "B"})
    ),
    Endpoint(
        "block member",
        AGENT,
        200,
        lambda api: Call("POST", f"/v1/members/{_member(api)['id']}/block", {"reason": "fraud"}),
    ),
    Endpoint("unblock member", AGENT, 200, lambda api: _blocked_member_unblock(api)),
    Endpoint("add card", CASHIER, 201, lambda api: Call("POST", f"/v1/members/{_member(api)['id']}/cards", {})),
    Endpoint(
        "link bank card",
        CASHIER,
        201,
        lambda api: Call("POST", f"/v1/members/{_member(api)['id']}/cards", {"kind": "bank", "pan": _pan()}),
    ),
    Endpoint("issue batch", CASHIER, 201, lambda api: Call("POST", "/v1/cards/batch", {"count": 2})),
    Endpoint("read card", READ, 200, lambda api: Call("GET", f"/v1/cards/{_card(api)}")),
    Endpoint(
        "activate card",
        CASHIER,
        200,
        lambda api: Call("POST", f"/v1/cards/{_issued(api)}/activate", {"member_id": _member(api)["id"]}),
    ),
    Endpoint("block card", CASHIER, 200, lambda api: Call("POST", f"/v1/cards/{_card(api)}/block", {"reason": "lost"})),
    Endpoint("replace card", CASHIER, 201, lambda api: Call("POST", f"/v1/cards/{_card(api)}/replace")),
    Endpoint("read programme", READ, 200, lambda api: Call("GET", "/v1/program")),
    Endpoint("configure programme", CONFIG, 200, lambda api: Call("PATCH", "/v1/program", {"pending_days": 3})),
    Endpoint("read audit", AUDIT, 200, lambda api: Call("GET", "/v1/audit")),
    Endpoint("create api key", ADMIN, 201, lambda api: Call("POST", "/v1/api-keys", {"role": "cashier"})),
    Endpoint("list api keys", ADMIN, 200, lambda api: Call("GET", "/v1/api-keys")),
    Endpoint("revoke api key", ADMIN, 200, lambda api: _revoke_call(api)),
]


def _blocked_member_unblock(api: Any) -> Call:
    m = api.enrol()
    api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"})
    return Call("POST", f"/v1/members/{m['id']}/unblock")


def _pan() -> str:
    from patron.kit.luhn import with_check_digit

    return with_check_digit(f"427600{next(_seq):09d}")


def _revoke_call(api: Any) -> Call:
    key = api.post("/v1/api-keys", {"role": "analyst"}).json()
    return Call("DELETE", f"/v1/api-keys/{key['id']}")


def test_role_matrix_matches_api_md():
    # The matrix below, written out as API.md says it, guards the table above against drift.
    by_role = {role: sorted(e.name for e in ENDPOINTS if role in e.allowed) for role in ROLES}
    reads = ["identify", "list member cards", "read card", "read member", "read programme", "search members"]
    cards = ["activate card", "add card", "block card", "issue batch", "link bank card", "replace card"]
    assert by_role["cashier"] == sorted([*reads, *cards, "enrol"])
    assert by_role["agent"] == sorted([*by_role["cashier"], "edit member", "block member", "unblock member"])
    assert by_role["marketer"] == sorted([*reads, "read audit", "configure programme"])
    assert by_role["analyst"] == sorted([*reads, "read audit"])
    assert by_role["admin"] == sorted(e.name for e in ENDPOINTS)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_role_may_or_may_not(api, endpoint):
    calls = {role: endpoint.prepare(api) for role in ROLES}  # fresh data for each role
    before = state(api)
    for role in sorted(set(ROLES) - endpoint.allowed):
        call = calls[role]
        r = api.request(call.method, call.path, role=role, json=call.json, params=call.params)
        b = assert_problem(r, 403, "forbidden")
        assert b["detail"] == f"The {role} role may not do this"
    assert state(api) == before
    for role in sorted(endpoint.allowed):
        call = calls[role]
        r = api.request(call.method, call.path, role=role, json=call.json, params=call.params)
        assert r.status_code == endpoint.status, (role, r.text)


# API keys --------------------------------------------------------------------------------------


def test_create_key_shows_it_once_and_stores_a_hash(api):
    r = api.post("/v1/api-keys", {"role": "cashier", "name": "till 7", "location": "MSK-01"})
    assert r.status_code == 201, r.text
    key = r.json()
    assert set(key) == {"id", "name", "role", "location", "prefix", "created_at", "revoked_at", "key"}
    assert (key["name"], key["role"], key["location"], key["revoked_at"]) == ("till 7", "cashier", "MSK-01", None)
    assert re.fullmatch(r"ptr_[A-Za-z0-9_\-]{43}", key["key"])
    assert key["prefix"] == key["key"][:12]
    datetime.fromisoformat(key["created_at"])

    # It works, with its role.
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert api.get("/v1/members", role=None, headers=dict(auth)).status_code == 200
    assert_problem(api.patch("/v1/program", {"name": "x"}, role=None, headers=dict(auth)), 403, "forbidden")

    # Never shown again.
    listed = api.get("/v1/api-keys")
    assert listed.status_code == 200
    mine = [k for k in listed.json()["items"] if k["id"] == key["id"]]
    assert mine == [{k: v for k, v in key.items() if k != "key"}]
    assert key["key"] not in listed.text

    # Stored as a SHA-256 hash only; the plain key is nowhere in the database.
    rows = dump(api.db)["api_keys"]
    assert hashlib.sha256(key["key"].encode()).hexdigest() in repr(rows)
    assert key["key"] not in all_text(api.db)
    assert key["key"][4:] not in all_text(api.db)


def test_key_defaults_and_validation(api):
    r = api.post("/v1/api-keys", {"role": "marketer"})
    assert (r.json()["name"], r.json()["location"]) == ("marketer key", None)
    before = state(api)
    for payload, field in [
        ({"role": "root"}, "role"),
        ({}, "role"),
        ({"role": "admin", "name": ""}, "name"),
        ({"role": "admin", "key": "ptr_mine"}, "key"),
    ]:
        assert_problem(api.post("/v1/api-keys", payload), 422, "validation_error", field)
    assert state(api) == before


# Audit trail -----------------------------------------------------------------------------------


def _key_id(api: Any, role: str) -> str:
    api.key(role)
    items = api.get("/v1/api-keys").json()["items"]
    return next(k["id"] for k in items if k["name"] == f"test {role}")


def _card_id(api: Any, **where: Any) -> str:
    return str(api.db.read(lambda s: s.scalars(select(Card.id).filter_by(**where)).one()))


def test_every_change_is_audited(api):
    key_ids = {role: _key_id(api, role) for role in ROLES}
    admin_id, agent_id, cashier_id, marketer_id = (key_ids[r] for r in ("admin", "agent", "cashier", "marketer"))
    start = api.get("/v1/audit", params={"limit": "500"}).json()["items"]
    request_ids = []

    def do(method: str, path: str, role: str, json: Any = None) -> Any:
        r = api.request(method, path, role=role, json=json)
        assert r.status_code in (200, 201), r.text
        request_ids.append(r.headers["x-request-id"])
        return r.json()

    m = do(
        "POST",
        "/v1/members",
        "cashier",
        {"first_name": "A", "last_name": "B", "phone": "+79161112233", "consents": {"program_rules": True}},
    )
    do("PATCH", f"/v1/members/{m['id']}", "agent", {"last_name": "C", "email": "c@example.com"})
    do("POST", f"/v1/members/{m['id']}/block", "agent", {"reason": "fraud"})
    do("POST", f"/v1/members/{m['id']}/unblock", "agent")
    card = do("POST", f"/v1/members/{m['id']}/cards", "cashier", {})
    do("POST", f"/v1/members/{m['id']}/cards", "cashier", {"kind": "bank", "pan": "2202200000000016"})
    issued = do("POST", "/v1/cards/batch", "cashier", {"count": 2})["items"]
    do("POST", f"/v1/cards/{issued[0]['number']}/activate", "cashier", {"member_id": m["id"]})
    do("POST", f"/v1/cards/{issued[0]['number']}/block", "cashier", {"reason": "lost"})
    new = do("POST", f"/v1/cards/{card['number']}/replace", "cashier")
    do("PATCH", "/v1/program", "marketer", {"name": "Club", "pending_days": 2})
    key = do("POST", "/v1/api-keys", "admin", {"role": "analyst", "name": "BI"})
    do("DELETE", f"/v1/api-keys/{key['id']}", "admin")

    r = api.get("/v1/audit", params={"limit": "500"}, role="analyst")
    assert r.status_code == 200
    items = r.json()["items"]
    new_items = list(reversed(items[: len(items) - len(start)]))  # oldest first
    mid = m["id"]
    card_id = _card_id(api, number=card["number"])
    expected = [
        (cashier_id, "test cashier", "member.enrol", "member", mid, {"channel": "pos"}),
        (agent_id, "test agent", "member.update", "member", mid, {"fields": ["email", "last_name"]}),
        (agent_id, "test agent", "member.block", "member", mid, {"reason": "fraud"}),
        (agent_id, "test agent", "member.unblock", "member", mid, {}),
        (cashier_id, "test cashier", "card.add", "card", card_id, {"member_id": mid}),
        (
            cashier_id,
            "test cashier",
            "card.link_bank",
            "card",
            _card_id(api, kind="bank"),
            {"member_id": mid, "last4": "0016"},
        ),
        (cashier_id, "test cashier", "card.issue_batch", "card", None, {"count": 2, "prefix": "7800"}),
        (
            cashier_id,
            "test cashier",
            "card.activate",
            "card",
            _card_id(api, number=issued[0]["number"]),
            {"member_id": mid},
        ),
        (
            cashier_id,
            "test cashier",
            "card.block",
            "card",
            _card_id(api, number=issued[0]["number"]),
            {"reason": "lost"},
        ),
        (
            cashier_id,
            "test cashier",
            "card.replace",
            "card",
            card_id,
            {"new_card_id": _card_id(api, number=new["number"]), "member_id": mid},
        ),
        (marketer_id, "test marketer", "program.update", "program", "1", {"fields": ["name", "pending_days"]}),
        (admin_id, "test admin", "api_key.create", "api_key", key["id"], {"role": "analyst", "location": None}),
        (admin_id, "test admin", "api_key.revoke", "api_key", key["id"], {}),
    ]
    got = [
        (e["actor"]["id"], e["actor"]["name"], e["action"], e["entity_type"], e["entity_id"], e["details"])
        for e in new_items
    ]
    assert got == expected
    assert all(e["actor"]["kind"] == "api_key" for e in new_items)
    assert [e["request_id"] for e in new_items] == request_ids
    times = [datetime.fromisoformat(e["at"]) for e in new_items]
    assert times == sorted(times)

    # Filters.
    by_member = api.get("/v1/audit", params={"entity_type": "member", "entity_id": mid}).json()["items"]
    assert [e["action"] for e in by_member] == ["member.unblock", "member.block", "member.update", "member.enrol"]
    by_action = api.get("/v1/audit", params={"action": "card.block"}).json()["items"]
    assert [e["entity_id"] for e in by_action] == [_card_id(api, number=issued[0]["number"])]
    by_actor = api.get("/v1/audit", params={"actor_id": marketer_id}).json()["items"]
    assert [e["action"] for e in by_actor] == ["program.update"]


def test_audit_pages(api):
    for _ in range(3):
        api.enrol()
    first = api.get("/v1/audit", params={"limit": "2", "action": "member.enrol"}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get("/v1/audit", params={"limit": "2", "action": "member.enrol", "cursor": first["next_cursor"]})
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    assert_problem(api.get("/v1/audit", params={"limit": "501"}), 422, "validation_error", "limit")


def test_audit_holds_no_email_or_phone(api):
    m = api.enrol(email="Secret.Person@Example.com", phone="8 (916) 987-65-43")
    api.patch(f"/v1/members/{m['id']}", {"email": "other.secret@example.com", "phone": "+7 926 555 44 33"})
    api.patch(f"/v1/members/{m['id']}", {"attributes": {"note": "n"}, "consents": {"marketing_sms": True}})
    api.get("/v1/identify", params={"phone": "+79265554433"})
    api.get("/v1/members", params={"email": "other.secret@example.com"})
    api.post(f"/v1/members/{m['id']}/block", {"reason": "duplicate account"})

    audit = repr(dump(api.db)["audit_log"]).lower()
    assert "member.update" in audit and m["id"].replace("-", "") in audit.replace("-", "")
    for secret in [
        "secret.person@example.com",
        "other.secret@example.com",
        "secret.person",
        "other.secret",
        "79169876543",
        "9169876543",
        "987-65-43",
        "79265554433",
        "9265554433",
    ]:
        assert secret not in audit
    api_view = api.get("/v1/audit", params={"limit": "500"}).text.lower()
    assert "secret" not in api_view
    assert "9876543" not in api_view and "5554433" not in api_view
