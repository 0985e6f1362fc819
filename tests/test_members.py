"""Members: enrolment, the member object, reading, editing, search and blocking."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from patron.access.principal import SYSTEM
from patron.kit.luhn import is_valid
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import ConsentsIn, MemberCreate
from tests.helpers import assert_problem, state

MEMBER_KEYS = {
    # API.md "Members"
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
    # added by Patron
    "channel",
}

FULL = {
    "first_name": "Ivan",
    "last_name": "Petrov",
    "email": "Ivan.Petrov@Example.COM",
    "phone": "8 (916) 123-45-67",
    "birth_date": "1990-05-17",
    "language": "ru",
    "channel": "web",
    "attributes": {"car": "Lada Vesta", "plate": "A123BC77"},
    "consents": {"program_rules": True, "marketing_email": True, "marketing_sms": False, "marketing_push": True},
}


def body(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "first_name": "Anna",
        "last_name": "Smirnova",
        "phone": "+7 903 555-00-11",
        "consents": {"program_rules": True},
    }
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def member_row(api: Any, member_id: str) -> Member:
    return api.db.read(lambda s: s.get(Member, uuid.UUID(member_id)))


# Enrolment -------------------------------------------------------------------------------------


def test_enrol_with_every_field(api):
    before = datetime.now(UTC)
    r = api.post("/v1/members", FULL, role="cashier")
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    m = r.json()
    assert set(m) == MEMBER_KEYS
    uuid.UUID(m["id"])
    assert re.fullmatch(r"1\d{9}", m["number"]) and is_valid(m["number"])
    assert m["first_name"] == "Ivan"
    assert m["last_name"] == "Petrov"
    assert m["email"] == "ivan.petrov@example.com"
    assert m["phone"] == "+79161234567"
    assert m["birth_date"] == "1990-05-17"
    assert m["language"] == "ru"
    assert m["channel"] == "web"
    assert m["status"] == "active"
    assert m["tier"] == {"code": "member", "name": "Member"}
    assert m["tier_progress"] == {"metric": "points", "value": 0, "next_tier": None, "needed": None}
    assert m["points"] == {"available": 0, "pending": 0}
    assert m["segments"] == []
    assert re.fullmatch(r"[346789ABCDEFGHJKMNPQRTUVWXY]{8}", m["referral_code"])
    enrolled = datetime.fromisoformat(m["enrolled_at"])
    assert enrolled.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= enrolled <= after + timedelta(seconds=1)
    assert m["consents"] == {
        "program_rules": True,
        "rules_version": "1",
        "rules_accepted_at": m["enrolled_at"],
        "marketing_email": True,
        "marketing_sms": False,
        "marketing_push": True,
    }
    assert m["attributes"] == {"car": "Lada Vesta", "plate": "A123BC77"}


def test_enrol_defaults_email_only_consent_history_and_unique_codes(api):
    m = api.post("/v1/members", body(), role="cashier").json()
    assert m["email"] is None
    assert m["phone"] == "+79035550011"
    assert m["birth_date"] is None
    assert m["language"] == "en"
    assert m["channel"] == "pos"
    assert m["attributes"] == {}
    assert m["consents"]["marketing_email"] is False
    assert m["consents"]["marketing_sms"] is False
    assert m["consents"]["marketing_push"] is False

    r = api.post("/v1/members", body(phone=None, email="  Olga@Mail.RU "))
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "olga@mail.ru"
    assert r.json()["phone"] is None

    m = api.post("/v1/members", {**FULL, "email": "c@example.com", "phone": "+79035550012"}).json()
    events = api.db.read(
        lambda s: sorted(
            (e.kind, e.granted, e.rules_version, e.channel)
            for e in s.scalars(select(ConsentEvent).where(ConsentEvent.member_id == uuid.UUID(m["id"])))
        )
    )
    assert events == [
        ("marketing_email", True, None, "web"),
        ("marketing_push", True, None, "web"),
        ("program_rules", True, "1", "web"),
    ]

    a, b = api.enrol(), api.enrol()
    assert a["id"] != b["id"]
    assert a["number"] != b["number"]
    assert a["referral_code"] != b["referral_code"]


PHONE_FORMS = [
    ("8 (916) 123-45-61", "+79161234561"),
    ("+7 916 123 45 62", "+79161234562"),
    ("89161234563", "+79161234563"),
    ("9161234564", "+79161234564"),
    ("8-916-123-45-65", "+79161234565"),
    (" +7 (916) 123-45-66 ", "+79161234566"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("+44 20 7946 0018", "+442079460018"),
]


def test_phone_is_stored_in_e164_with_the_programme_region(api):
    for written, e164 in PHONE_FORMS:
        assert api.enrol(phone=written)["phone"] == e164


def test_phone_region_of_the_programme_applies_to_new_enrolments(api):
    r = api.patch("/v1/program", {"phone_region": "CN"}, role="marketer")
    assert r.status_code == 200, r.text
    assert api.enrol(phone="138 0013 8000")["phone"] == "+8613800138000"
    # A number written with its country code stays what it is.
    assert api.enrol(phone="+7 916 123-45-67")["phone"] == "+79161234567"
    # A Russian number written the local way is now read as a Chinese one.
    assert api.enrol(phone="8 (916) 765-43-21")["phone"] == "+8689167654321"

    api.patch("/v1/program", {"phone_region": "GB"})
    assert api.enrol(phone="020 7946 0018")["phone"] == "+442079460018"


def test_invalid_email_or_phone_is_refused(api):
    before = state(api)
    for email in ["not-an-email", "a@b", "ivan@", "@example.com", "two@@example.com", "a b@example.com"]:
        b = assert_problem(api.post("/v1/members", body(email=email)), 422, "validation_error", "email")
        assert b["errors"] == [{"field": "email", "message": "not a valid email address"}]
    for phone in ["123", "abc", "+7 916 123", "+7 916 123 45 67 8"]:
        b = assert_problem(api.post("/v1/members", body(phone=phone)), 422, "validation_error", "phone")
        assert b["errors"] == [{"field": "phone", "message": "not a valid phone number"}]
    assert state(api) == before


def test_programme_rules_and_a_contact_are_required(api):
    before = state(api)
    for consents, field in [
        ({"program_rules": False}, "consents.program_rules"),
        ({"program_rules": False, "marketing_email": True}, "consents.program_rules"),
        ({"marketing_email": True}, "consents.program_rules"),
        ({}, "consents.program_rules"),
        (None, "consents"),
    ]:
        payload = body()
        if consents is None:
            del payload["consents"]
        else:
            payload["consents"] = consents
        assert_problem(api.post("/v1/members", payload), 422, "validation_error", field)

    # Neither email nor phone.
    payload = body()
    del payload["phone"]
    assert_problem(api.post("/v1/members", payload), 422, "validation_error", "email")
    assert_problem(api.post("/v1/members", body(phone="", email="")), 422, "validation_error", "email")
    assert_problem(api.post("/v1/members", body(phone="  ", email="  ")), 422, "validation_error", "email")
    assert state(api) == before


MALFORMED = [
    ({"first_name": None}, "first_name"),
    ({"first_name": "   "}, "first_name"),
    ({"last_name": "x" * 101}, "last_name"),
    ({"language": "de"}, "language"),
    ({"channel": "fax"}, "channel"),
    ({"birth_date": "1990-13-01"}, "birth_date"),
    ({"birth_date": "17.05.1990"}, "birth_date"),
    ({"birth_date": (date.today() + timedelta(days=2)).isoformat()}, "birth_date"),
    ({"birth_date": "1899-12-31"}, "birth_date"),
    ({"attributes": {"car": 5}}, "attributes.car"),
    ({"attributes": {"bad key": "x"}}, "attributes.bad key.[key]"),
    ({"status": "blocked"}, "status"),
    ({"number": "1000000009"}, "number"),
]


def test_malformed_enrolment_is_refused(api):
    before = state(api)
    for fields, field in MALFORMED:
        payload = body()
        for k, v in fields.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        assert_problem(api.post("/v1/members", payload), 422, "validation_error", field)
    assert state(api) == before


DUPLICATES = [
    ({"email": "ivan{i}@example.com"}, {"email": "ivan{i}@example.com"}),
    ({"email": "ivan{i}@example.com"}, {"email": "IVAN{i}@Example.Com"}),
    ({"email": "Ivan{i}@Example.com"}, {"email": " ivan{i}@example.com "}),
    ({"phone": "+7916123456{i}"}, {"phone": "+7916123456{i}"}),
    ({"phone": "+7916123456{i}"}, {"phone": "8 (916) 123-45-6{i}"}),
    ({"phone": "8 916 123 45 6{i}"}, {"phone": "916-123-456{i}"}),
]


def test_duplicate_email_or_phone_is_refused(api):
    for i, (first, second) in enumerate(DUPLICATES):
        api.enrol(**{"email": None, "phone": None, **{k: v.format(i=i) for k, v in first.items()}})
        before = state(api)
        # The other contact detail is new, so only the duplicate can be the reason.
        other = {"phone": "+7 999 000-11-22"} if "email" in second else {"email": "fresh@example.com"}
        again = {k: v.format(i=i) for k, v in second.items()}
        payload = body(**{"phone": None, "email": None, **again, **other})
        assert_problem(api.post("/v1/members", payload), 409, "member_exists")
        assert state(api) == before


def test_referral_code_of_another_member_is_accepted_unknown_refused(api):
    referrer = api.enrol()
    r = api.post("/v1/members", body(referral_code=referrer["referral_code"].lower()))
    assert r.status_code == 201, r.text
    newcomer = member_row(api, r.json()["id"])
    assert newcomer.referred_by_id == uuid.UUID(referrer["id"])
    assert r.json()["referral_code"] != referrer["referral_code"]

    before = state(api)
    b = assert_problem(api.post("/v1/members", body(referral_code="XXXXXXXX")), 422, "validation_error")
    assert b["errors"] == [{"field": "referral_code", "message": "no member has this referral code"}]
    assert state(api) == before


# Reading ---------------------------------------------------------------------------------------


def test_get_member_returns_what_enrolment_returned(api):
    m = api.post("/v1/members", FULL).json()
    for role in ("cashier", "agent", "marketer", "analyst", "admin"):
        r = api.get(f"/v1/members/{m['id']}", role=role)
        assert r.status_code == 200
        assert r.json() == m


def test_unknown_member_is_404_malformed_id_422(api):
    missing = uuid.uuid4()
    assert_problem(api.get(f"/v1/members/{missing}"), 404, "not_found")
    assert_problem(api.patch(f"/v1/members/{missing}", {"first_name": "X"}), 404, "not_found")
    assert_problem(api.post(f"/v1/members/{missing}/block", {"reason": "fraud"}), 404, "not_found")
    assert_problem(api.post(f"/v1/members/{missing}/unblock"), 404, "not_found")
    assert_problem(api.post(f"/v1/members/{missing}/cards", {"kind": "loyalty"}), 404, "not_found")
    assert_problem(api.get(f"/v1/members/{missing}/cards"), 404, "not_found")
    assert_problem(api.get("/v1/members/12345"), 422, "validation_error", "member_id")


# Editing ---------------------------------------------------------------------------------------


def test_patch_changes_the_given_fields_only(api):
    m = api.post("/v1/members", FULL).json()
    r = api.patch(
        f"/v1/members/{m['id']}",
        {
            "first_name": "Ivan ",
            "last_name": "Sidorov",
            "email": "I.Sidorov@Example.COM",
            "phone": "8 926 000 11 22",
            "birth_date": "1991-01-02",
            "language": "zh",
        },
        role="agent",
    )
    assert r.status_code == 200, r.text
    out = r.json()
    expected = {
        **m,
        "first_name": "Ivan",
        "last_name": "Sidorov",
        "email": "i.sidorov@example.com",
        "phone": "+79260001122",
        "birth_date": "1991-01-02",
        "language": "zh",
    }
    assert out == expected
    assert api.get(f"/v1/members/{m['id']}").json() == expected


def test_patch_can_drop_one_contact_but_not_both(api):
    m = api.enrol(email="both@example.com")
    r = api.patch(f"/v1/members/{m['id']}", {"phone": None})
    assert r.status_code == 200, r.text
    assert r.json()["phone"] is None
    assert r.json()["email"] == "both@example.com"
    before = state(api)
    assert_problem(api.patch(f"/v1/members/{m['id']}", {"email": None}), 422, "validation_error", "email")
    assert state(api) == before


def test_patch_attributes_merge_null_deletes_and_consents(api):
    m = api.enrol(attributes={"car": "Lada", "color": "red", "plate": "A1"})
    r = api.patch(f"/v1/members/{m['id']}", {"attributes": {"color": None, "plate": "B2", "vin": "X", "nope": None}})
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"car": "Lada", "plate": "B2", "vin": "X"}
    r = api.patch(f"/v1/members/{m['id']}", {"first_name": "Maria"})
    assert r.json()["attributes"] == {"car": "Lada", "plate": "B2", "vin": "X"}
    assert api.get(f"/v1/members/{m['id']}").json()["attributes"] == {"car": "Lada", "plate": "B2", "vin": "X"}
    m = api.enrol(consents={"program_rules": True, "marketing_email": True})
    r = api.patch(f"/v1/members/{m['id']}", {"consents": {"marketing_email": False, "marketing_sms": True}})
    assert r.status_code == 200, r.text
    c = r.json()["consents"]
    assert (c["program_rules"], c["marketing_email"], c["marketing_sms"], c["marketing_push"]) == (
        True,
        False,
        True,
        False,
    )
    assert api.get(f"/v1/members/{m['id']}").json()["consents"] == c
    events = api.db.read(
        lambda s: sorted(
            (e.kind, e.granted)
            for e in s.scalars(select(ConsentEvent).where(ConsentEvent.member_id == uuid.UUID(m["id"])))
        )
    )
    assert events == [
        ("marketing_email", False),
        ("marketing_email", True),
        ("marketing_sms", True),
        ("program_rules", True),
    ]


def test_patch_duplicates_own_contact_allowed_another_members_refused(api):
    m = api.enrol(email="me@example.com", phone="+79161112233")
    r = api.patch(f"/v1/members/{m['id']}", {"email": "ME@example.com", "phone": "8 916 111 22 33"})
    assert r.status_code == 200, r.text
    assert (r.json()["email"], r.json()["phone"]) == ("me@example.com", "+79161112233")

    api.enrol(email="taken@example.com", phone="+79164445566")
    m = api.enrol(email="mine@example.com")
    before = state(api)
    for patch in [
        {"email": "TAKEN@example.com"},
        {"phone": "8 (916) 444-55-66"},
        {"phone": "+79164445566"},
        {"first_name": "Changed", "email": "taken@example.com"},
    ]:
        assert_problem(api.patch(f"/v1/members/{m['id']}", patch), 409, "member_exists")
    assert state(api) == before
    assert api.get(f"/v1/members/{m['id']}").json() == m


def test_malformed_patch_is_refused(api):
    m = api.enrol()
    before = state(api)
    for patch, field in [
        ({"first_name": None}, "first_name"),
        ({"last_name": ""}, "last_name"),
        ({"email": "nope"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"language": "fr"}, "language"),
        ({"language": None}, "language"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"status": "blocked"}, "status"),
        ({"number": "1000000009"}, "number"),
        ({"consents": {"program_rules": False}}, "consents.program_rules"),
        ({"attributes": {"k": 1}}, "attributes.k"),
    ]:
        assert_problem(api.patch(f"/v1/members/{m['id']}", patch), 422, "validation_error", field)
    assert state(api) == before


# Search ----------------------------------------------------------------------------------------


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


def test_search_by_each_filter(api):
    ivan = api.enrol(first_name="Ivan", last_name="Petrov", email="ivan.p@example.com", phone="+79161234567")
    olga = api.enrol(first_name="Olga", last_name="Ivanova", email="olga@mail.ru", phone="+79037654321")
    card = api.post(f"/v1/members/{olga['id']}/cards", {"kind": "loyalty"}).json()["number"]
    spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))

    def search(**params: str) -> list[str]:
        return ids(api.get("/v1/members", params=params, role="cashier"))

    assert search(q="petrov") == [ivan["id"]]
    assert search(q="PETROV") == [ivan["id"]]
    assert search(q="ivan") == [olga["id"], ivan["id"]]  # first name of one, last name of the other
    assert search(q="Ivan Petrov") == [ivan["id"]]
    assert search(q="mail.ru") == [olga["id"]]
    assert search(q="7654321") == [olga["id"]]
    assert search(q=ivan["number"]) == [ivan["id"]]
    assert search(q=card) == [olga["id"]]
    assert search(q="nobody") == []
    assert search(phone="8 (916) 123-45-67") == [ivan["id"]]
    assert search(phone="+79037654321") == [olga["id"]]
    assert search(email="IVAN.P@Example.com") == [ivan["id"]]
    assert search(email="nobody@example.com") == []
    assert search(card=spaced) == [olga["id"]]
    assert search(card=olga["number"]) == [olga["id"]]
    assert search(card="4000000000000002") == []
    assert search(q="ivan", phone="+79161234567") == [ivan["id"]]
    assert search(q="olga", phone="+79161234567") == []
    assert search() == [olga["id"], ivan["id"]]
    assert_problem(api.get("/v1/members", params={"phone": "abc"}), 422, "validation_error", "phone")
    assert_problem(api.get("/v1/members", params={"card": "12ab"}), 422, "validation_error", "card")


def test_search_pages_through_every_member_once(api):
    created = [api.enrol(last_name="Pagetest")["id"] for _ in range(5)]
    api.enrol(last_name="Other")
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        params = {"q": "pagetest", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/v1/members", params=params)
        page = ids(r)
        sizes.append(len(page))
        seen += page
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == list(reversed(created))  # newest first


def test_search_default_limit_is_50(api):
    def enrol_many(s: Any) -> None:
        for i in range(51):
            data = MemberCreate(
                first_name="Bulk",
                last_name=f"Member{i}",
                phone=f"+7917{i:07d}",
                consents=ConsentsIn(program_rules=True),
            )
            members.enrol(s, SYSTEM, data)

    api.db.write(enrol_many)
    r = api.get("/v1/members", params={"q": "bulk"})
    assert len(r.json()["items"]) == 50
    assert r.json()["next_cursor"] is not None
    r = api.get("/v1/members", params={"q": "bulk", "cursor": r.json()["next_cursor"]})
    assert [m["last_name"] for m in r.json()["items"]] == ["Member0"]
    assert r.json()["next_cursor"] is None


def test_search_paging_edges_and_parameters(api):
    m = api.enrol(last_name="Exact")
    r = api.get("/v1/members", params={"limit": "500"})
    assert r.status_code == 200
    assert r.json() == {"items": [m], "next_cursor": None}
    for _ in range(2):
        api.enrol(last_name="Exact")
    r = api.get("/v1/members", params={"q": "exact", "limit": "3"})
    assert len(r.json()["items"]) == 3
    assert r.json()["next_cursor"] is None  # a page that fits exactly has no next page
    r = api.get("/v1/members", params={"q": "exact", "limit": "1"})
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is not None

    for params, field in [
        ({"limit": "501"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "AAAA"}, "cursor"),
    ]:
        assert_problem(api.get("/v1/members", params=params), 422, "validation_error", field)


# Blocking --------------------------------------------------------------------------------------


def test_block_and_unblock(api):
    m = api.enrol(email="blocked@example.com", phone="+79031230044")
    r = api.post(f"/v1/members/{m['id']}/block", {"reason": "card sharing"}, role="agent")
    assert r.status_code == 200, r.text
    assert r.json() == {**m, "status": "blocked"}
    assert member_row(api, m["id"]).block_reason == "card sharing"

    # Still readable, searchable and identifiable.
    assert api.get(f"/v1/members/{m['id']}").json()["status"] == "blocked"
    assert ids(api.get("/v1/members", params={"email": "blocked@example.com"})) == [m["id"]]
    ident = api.get("/v1/identify", params={"phone": "8 903 123 00 44"}, role="cashier")
    assert ident.status_code == 200
    assert ident.json()["id"] == m["id"]
    assert ident.json()["status"] == "blocked"

    r = api.post(f"/v1/members/{m['id']}/unblock", role="agent")
    assert r.status_code == 200, r.text
    assert r.json() == m
    assert member_row(api, m["id"]).block_reason is None


def test_block_repeats_refusals_and_blocked_member_gets_no_card(api):
    m = api.enrol()
    api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"})
    before = state(api)
    r = api.post(f"/v1/members/{m['id']}/block", {"reason": "another reason"})
    assert r.status_code == 200
    assert r.json()["status"] == "blocked"
    assert state(api) == before

    other = api.enrol()
    before = state(api)
    r = api.post(f"/v1/members/{other['id']}/unblock")
    assert r.status_code == 200
    assert r.json() == other
    assert state(api) == before

    m = api.enrol()
    before = state(api)
    for payload in [None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": None}]:
        assert_problem(api.post(f"/v1/members/{m['id']}/block", payload), 422, "validation_error")
    assert state(api) == before

    m = api.enrol()
    api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud"})
    before = state(api)
    assert_problem(api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}), 409, "member_blocked")
    assert state(api) == before


def test_search_by_name_ignores_case_in_any_script(api):
    ivan = api.enrol(first_name="Иван", last_name="Петров")
    api.enrol(first_name="Анна", last_name="Смирнова")
    api.enrol(first_name="Wang", last_name="Fang_100%")
    for q in ("иван", "ПЕТРОВ", "иван петров"):
        r = api.get("/v1/members", params={"q": q})
        assert [m["id"] for m in r.json()["items"]] == [ivan["id"]], q
    # LIKE wildcards in the query are plain characters.
    r = api.get("/v1/members", params={"q": "_100%"})
    assert [m["last_name"] for m in r.json()["items"]] == ["Fang_100%"]
    assert api.get("/v1/members", params={"q": "%%"}).json()["items"] == []
