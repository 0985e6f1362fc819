"""Referrals: a member cannot refer themself; a real referral still pays both sides."""

from __future__ import annotations

from typing import Any

from tests.helpers import assert_problem, state


def enrol_body(**fields: Any) -> dict[str, Any]:
    return {"first_name": "Anna", "last_name": "Petrova", "consents": {"program_rules": True}, **fields}


def test_the_code_owner_enrolling_again_is_refused_and_nothing_is_created(api):
    assert api.post("/v1/earning-rules", {"kind": "welcome", "name": "Welcome", "points": 50}).status_code == 201
    owner = api.post("/v1/members", enrol_body(phone="+79161110001", birth_date="1990-05-17")).json()
    before = state(api)
    # another phone and email, the same person: name (any case, extra spaces) and birth date
    again = enrol_body(
        first_name="  ANNA ",
        last_name="petrova",
        phone="+79161110002",
        email="anna.second@example.com",
        birth_date="1990-05-17",
        referral_code=owner["referral_code"].lower(),
    )
    body = assert_problem(api.post("/v1/members", again, role="cashier"), 409, "self_referral")
    assert body["detail"] == "The referral code belongs to the member who is enrolling"
    assert state(api) == before
    # without the code the same person is simply a new member (duplicate people are fraud review's work)
    del again["referral_code"]
    assert api.post("/v1/members", again).status_code == 201


def test_the_code_owners_own_phone_or_email_is_member_exists(api):
    owner = api.post("/v1/members", enrol_body(phone="+79161110003", email="anna@example.com")).json()
    before = state(api)
    for contact in ({"phone": "8 916 111-00-03"}, {"email": "ANNA@example.com"}):
        r = api.post("/v1/members", enrol_body(referral_code=owner["referral_code"], **contact))
        assert_problem(r, 409, "member_exists")
    assert state(api) == before


def test_namesakes_and_members_without_a_birth_date_may_be_referred(api):
    owner = api.post("/v1/members", enrol_body(phone="+79161110004", birth_date="1990-05-17")).json()
    namesake = enrol_body(phone="+79161110005", birth_date="1991-05-17", referral_code=owner["referral_code"])
    r = api.post("/v1/members", namesake)
    assert r.status_code == 201, r.text
    undated = enrol_body(phone="+79161110006", referral_code=owner["referral_code"])
    assert api.post("/v1/members", undated).status_code == 201
    other = enrol_body(
        first_name="Boris", phone="+79161110007", birth_date="1990-05-17", referral_code=owner["referral_code"]
    )
    assert api.post("/v1/members", other).status_code == 201


def test_a_referral_pays_both_members_at_the_newcomers_first_purchase(api):
    r = api.post("/v1/earning-rules", {"kind": "referral", "name": "Bring a friend", "points": 150})
    assert r.status_code == 201
    referral = r.json()
    owner = api.post("/v1/members", enrol_body(phone="+79161110008", birth_date="1990-05-17")).json()
    friend = api.post(
        "/v1/members",
        enrol_body(
            first_name="Olga", phone="+79161110009", birth_date="1990-05-17", referral_code=owner["referral_code"]
        ),
    ).json()
    r = api.post("/v1/transactions", {"external_id": "t1", "member_id": friend["id"], "total": "100.00"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == {"available": 150, "pending": 0}
    for who in (owner, friend):
        entries = api.get(f"/v1/members/{who['id']}/ledger").json()["items"]
        assert [(e["kind"], e["points"], e["rule_id"]) for e in entries] == [("bonus", 150, referral["id"])]
