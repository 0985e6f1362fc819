"""Loyalty cards (issue, batch, activate, block, replace) and linked bank cards."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.engine import make_url

from patron.cards.models import Card
from patron.cards.service import pan_hash
from patron.kit.luhn import is_valid, with_check_digit
from patron.ledger.models import PointAccount
from tests.conftest import TEST_SECRET
from tests.helpers import all_text, assert_problem, dump, state

CARD_KEYS = {"number", "kind", "status", "member_id"}
PAN = "4276380012345679"  # Luhn-valid, not a real card
PAN_SPACED = "4276 3800 1234 5679"


def luhn(payload: str) -> str:
    return with_check_digit(payload)


def add_card(api: Any, member_id: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"/v1/members/{member_id}/cards", {"kind": "loyalty", **body}, role="cashier")
    assert r.status_code == 201, r.text
    return dict(r.json())


def batch(api: Any, count: int, **body: Any) -> list[dict[str, Any]]:
    r = api.post("/v1/cards/batch", {"count": count, **body}, role="cashier")
    assert r.status_code == 201, r.text
    return list(r.json()["items"])


def set_balance(api: Any, member_id: str, available: int, pending: int) -> None:
    api.db.write(
        lambda s: s.execute(
            update(PointAccount)
            .where(PointAccount.member_id == uuid.UUID(member_id))
            .values(available=available, pending=pending)
        )
    )


# Loyalty cards ---------------------------------------------------------------------------------


def test_generated_loyalty_cards(api):
    m = api.enrol()
    for payload in ({"kind": "loyalty"}, {}):
        r = api.post(f"/v1/members/{m['id']}/cards", payload, role="cashier")
        assert r.status_code == 201, r.text
        card = r.json()
        assert set(card) == CARD_KEYS
        assert re.fullmatch(r"7800\d{12}", card["number"])
        assert is_valid(card["number"])
        assert (card["kind"], card["status"], card["member_id"]) == ("loyalty", "active", m["id"])
        assert api.get(f"/v1/cards/{card['number']}", role="analyst").json() == card

    m = api.enrol()
    numbers = {add_card(api, m["id"])["number"] for _ in range(5)}
    assert len(numbers) == 5
    listed = api.get(f"/v1/members/{m['id']}/cards").json()["items"]
    assert sorted(c["number"] for c in listed) == sorted(numbers)


def test_given_number_is_cleaned_and_kept(api):
    m = api.enrol()
    number = luhn("780099990000123")
    spaced = f"{number[:4]} {number[4:8]}-{number[8:12]}.{number[12:]}"
    card = add_card(api, m["id"], number=f"  {spaced} ")
    assert card == {"number": number, "kind": "loyalty", "status": "active", "member_id": m["id"]}
    assert api.get(f"/v1/cards/{number}").json() == card
    # Spaces in the path are cleaned too.
    assert api.get(f"/v1/cards/{number[:4]} {number[4:8]} {number[8:12]} {number[12:]}").json() == card


def test_given_number_must_pass_luhn(api):
    m = api.enrol()
    good = luhn("780099990000123")
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    before = state(api)
    for number in [bad, "7800-ABCD-0000-0000", "18", luhn("1" * 19), "٧٨٠٠٩٩٩٩٠٠٠٠١٢٣١"]:
        b = assert_problem(
            api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty", "number": number}), 422, "validation_error"
        )
        assert [e["field"] for e in b["errors"]] == ["number"]
    assert state(api) == before


def test_number_of_another_member_is_refused_own_number_again_is_kept(api):
    owner, other = api.enrol(), api.enrol()
    card = add_card(api, owner["id"])
    before = state(api)
    spaced = " ".join(card["number"][i : i + 4] for i in range(0, 16, 4))
    for number in (card["number"], spaced):
        r = api.post(f"/v1/members/{other['id']}/cards", {"kind": "loyalty", "number": number})
        assert_problem(r, 409, "card_in_use")
    assert state(api) == before
    assert api.get(f"/v1/cards/{card['number']}").json()["member_id"] == owner["id"]

    # The member's own number given again: the same card, nothing new.
    m = api.enrol()
    card = add_card(api, m["id"])
    cards_before = dump(api.db)["cards"]
    assert add_card(api, m["id"], number=card["number"]) == card
    assert [row[:7] for row in dump(api.db)["cards"]] == [row[:7] for row in cards_before]  # all but the times


def test_unknown_card_is_404(api):
    assert_problem(api.get(f"/v1/cards/{luhn('780012345678901')}"), 404, "not_found")
    assert_problem(api.get("/v1/cards/not-a-number"), 404, "not_found")


# Batches ---------------------------------------------------------------------------------------


def test_batch_issue_with_and_without_prefix(api):
    cards = batch(api, 3)
    assert len(cards) == 3
    assert len({c["number"] for c in cards}) == 3
    for c in cards:
        assert set(c) == CARD_KEYS
        assert re.fullmatch(r"7800\d{12}", c["number"]) and is_valid(c["number"])
        assert (c["kind"], c["status"], c["member_id"]) == ("loyalty", "issued", None)
        assert api.get(f"/v1/cards/{c['number']}").json() == c
    # An issued card has no member yet.
    assert_problem(api.get("/v1/identify", params={"card": cards[0]["number"]}), 404, "not_found")

    cards = batch(api, 2, prefix="1234567890")
    assert all(re.fullmatch(r"1234567890\d{6}", c["number"]) and is_valid(c["number"]) for c in cards)
    assert len({c["number"] for c in cards}) == 2


def test_malformed_batch_is_refused(api):
    before = state(api)
    for payload, field in [
        ({"count": 0}, "count"),
        ({"count": 10001}, "count"),
        ({"count": "many"}, "count"),
        ({}, "count"),
        ({"count": 1, "prefix": "78a0"}, "prefix"),
        ({"count": 1, "prefix": ""}, "prefix"),
        ({"count": 1, "prefix": "12345678901"}, "prefix"),
    ]:
        assert_problem(api.post("/v1/cards/batch", payload), 422, "validation_error", field)
    assert state(api) == before


def test_activate_or_give_an_issued_card(api):
    m = api.enrol()
    card = batch(api, 1)[0]
    r = api.post(f"/v1/cards/{card['number']}/activate", {"member_id": m["id"]}, role="cashier")
    assert r.status_code == 200, r.text
    active = {**card, "status": "active", "member_id": m["id"]}
    assert r.json() == active
    assert api.get(f"/v1/cards/{card['number']}").json() == active
    assert api.get("/v1/identify", params={"card": card["number"]}).json()["id"] == m["id"]
    # Activating it again for the same member changes nothing.
    before = state(api)
    again = api.post(f"/v1/cards/{card['number']}/activate", {"member_id": m["id"]})
    assert (again.status_code, again.json()) == (200, active)
    assert state(api) == before

    # Giving an issued number to a member takes that card.
    m = api.enrol()
    card = batch(api, 1)[0]
    cards_before = len(dump(api.db)["cards"])
    assert add_card(api, m["id"], number=card["number"]) == {**card, "status": "active", "member_id": m["id"]}
    assert len(dump(api.db)["cards"]) == cards_before


def test_activation_refusals(api):
    owner, other = api.enrol(), api.enrol()
    blocked_member = api.enrol()
    api.post(f"/v1/members/{blocked_member['id']}/block", {"reason": "fraud"})
    owned = add_card(api, owner["id"])
    issued, blocked_card = batch(api, 2)
    api.post(f"/v1/cards/{blocked_card['number']}/block", {"reason": "stolen"})
    replaced = add_card(api, owner["id"])
    api.post(f"/v1/cards/{replaced['number']}/replace")
    before = state(api)

    def activate(number: str, member_id: Any) -> Any:
        return api.post(f"/v1/cards/{number}/activate", {"member_id": member_id})

    assert_problem(activate(owned["number"], other["id"]), 409, "card_in_use")
    assert_problem(activate(issued["number"], blocked_member["id"]), 409, "member_blocked")
    assert_problem(activate(blocked_card["number"], other["id"]), 409, "card_blocked")
    assert_problem(activate(replaced["number"], owner["id"]), 409, "card_state")
    assert_problem(activate(luhn("780055555555555"), other["id"]), 404, "not_found")
    assert_problem(activate(issued["number"], str(uuid.uuid4())), 404, "not_found")
    assert_problem(activate(issued["number"], "nope"), 422, "validation_error", "member_id")
    assert_problem(api.post(f"/v1/cards/{issued['number']}/activate", {}), 422, "validation_error", "member_id")
    assert state(api) == before


# Blocking --------------------------------------------------------------------------------------


def test_block_a_card(api):
    m = api.enrol()
    card = add_card(api, m["id"])
    r = api.post(f"/v1/cards/{card['number']}/block", {"reason": "lost"}, role="cashier")
    assert r.status_code == 200, r.text
    assert r.json() == {**card, "status": "blocked"}
    assert api.get(f"/v1/cards/{card['number']}").json()["status"] == "blocked"
    row = api.db.read(lambda s: s.query(Card).filter_by(number=card["number"]).one())
    assert row.block_reason == "lost"
    # The member is not blocked, only the card.
    assert api.get(f"/v1/members/{m['id']}").json()["status"] == "active"

    before = state(api)
    again = api.post(f"/v1/cards/{card['number']}/block", {"reason": "found and lost again"})
    assert (again.status_code, again.json()["status"]) == (200, "blocked")
    assert state(api) == before


def test_block_refusals(api):
    m = api.enrol()
    card = add_card(api, m["id"])
    api.post(f"/v1/cards/{card['number']}/replace")
    active = add_card(api, m["id"])
    before = state(api)
    assert_problem(api.post(f"/v1/cards/{card['number']}/block", {"reason": "lost"}), 409, "card_state")
    assert_problem(api.post(f"/v1/cards/{luhn('780055555555555')}/block", {"reason": "x"}), 404, "not_found")
    for payload in (None, {}, {"reason": ""}, {"reason": " "}):
        assert_problem(api.post(f"/v1/cards/{active['number']}/block", payload), 422, "validation_error")
    assert state(api) == before


# Replacement -----------------------------------------------------------------------------------


def test_replace_moves_the_member_to_a_new_card(api):
    m = api.enrol()
    old = add_card(api, m["id"])
    set_balance(api, m["id"], available=120, pending=30)
    member = api.get(f"/v1/members/{m['id']}").json()
    assert member["points"] == {"available": 120, "pending": 30}

    r = api.post(f"/v1/cards/{old['number']}/replace", role="cashier")
    assert r.status_code == 201, r.text
    new = r.json()
    assert set(new) == CARD_KEYS
    assert new["number"] != old["number"]
    assert re.fullmatch(r"7800\d{12}", new["number"]) and is_valid(new["number"])
    assert (new["kind"], new["status"], new["member_id"]) == ("loyalty", "active", m["id"])
    assert api.get(f"/v1/cards/{old['number']}").json() == {**old, "status": "replaced"}
    assert api.get(f"/v1/cards/{new['number']}").json() == new

    # Same member, same balance, reached through the new card.
    assert api.get(f"/v1/members/{m['id']}").json() == member
    assert api.get("/v1/identify", params={"card": new["number"]}).json() == member
    listed = api.get(f"/v1/members/{m['id']}/cards").json()["items"]
    assert sorted((c["number"], c["status"]) for c in listed) == sorted(
        [(old["number"], "replaced"), (new["number"], "active")]
    )
    row = api.db.read(lambda s: s.query(Card).filter_by(number=old["number"]).one())
    new_row = api.db.read(lambda s: s.query(Card).filter_by(number=new["number"]).one())
    assert row.replaced_by_id == new_row.id


def test_replace_into_a_given_number_an_issued_card_or_from_a_blocked_card(api):
    m = api.enrol()
    old = add_card(api, m["id"])
    number = luhn("780099990000777")
    r = api.post(f"/v1/cards/{old['number']}/replace", {"number": f"{number[:8]} {number[8:]}"})
    assert r.status_code == 201, r.text
    assert r.json() == {"number": number, "kind": "loyalty", "status": "active", "member_id": m["id"]}

    m = api.enrol()
    old = add_card(api, m["id"])
    spare = batch(api, 1)[0]
    r = api.post(f"/v1/cards/{old['number']}/replace", {"number": spare["number"]})
    assert r.status_code == 201, r.text
    assert r.json() == {**spare, "status": "active", "member_id": m["id"]}

    m = api.enrol()
    old = add_card(api, m["id"])
    api.post(f"/v1/cards/{old['number']}/block", {"reason": "lost"})
    r = api.post(f"/v1/cards/{old['number']}/replace")
    assert r.status_code == 201, r.text
    assert r.json()["member_id"] == m["id"]
    assert api.get(f"/v1/cards/{old['number']}").json()["status"] == "replaced"


def test_replace_refusals(api):
    m, other = api.enrol(), api.enrol()
    card = add_card(api, m["id"])
    others_card = add_card(api, other["id"])
    gone = add_card(api, m["id"])
    api.post(f"/v1/cards/{gone['number']}/replace")
    issued = batch(api, 1)[0]
    before = state(api)

    def replace(number: str, body: Any = None) -> Any:
        return api.post(f"/v1/cards/{number}/replace", body)

    assert_problem(replace(card["number"], {"number": others_card["number"]}), 409, "card_in_use")
    assert_problem(replace(card["number"], {"number": card["number"]}), 422, "validation_error", "number")
    bad = card["number"][:-1] + str((int(card["number"][-1]) + 1) % 10)
    assert_problem(replace(card["number"], {"number": bad}), 422, "validation_error", "number")
    assert_problem(replace(gone["number"]), 409, "card_state")
    assert_problem(replace(issued["number"]), 409, "card_state")
    assert_problem(replace(luhn("780055555555555")), 404, "not_found")
    assert state(api) == before
    assert api.get(f"/v1/cards/{card['number']}").json() == card


# Bank cards ------------------------------------------------------------------------------------


def test_link_a_bank_card(api):
    m = api.enrol()
    r = api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN_SPACED}, role="cashier")
    assert r.status_code == 201, r.text
    assert r.json() == {"kind": "bank", "last4": "5679", "status": "active", "member_id": m["id"]}
    assert PAN not in r.text
    listed = api.get(f"/v1/members/{m['id']}/cards")
    assert listed.json()["items"] == [r.json()]
    assert PAN not in listed.text
    row = api.db.read(lambda s: s.query(Card).filter_by(member_id=uuid.UUID(m["id"])).one())
    assert (row.kind, row.number, row.last4, row.pan_hash) == (
        "bank",
        None,
        "5679",
        pan_hash(TEST_SECRET.encode(), PAN),
    )
    # A bank card is not a loyalty card: it cannot be looked up by number.
    assert_problem(api.get(f"/v1/cards/{PAN}"), 404, "not_found")


def test_linking_the_same_bank_card_again(api):
    m, other = api.enrol(), api.enrol()
    first = api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN}).json()
    before = state(api)
    again = api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN_SPACED})
    assert (again.status_code, again.json()) == (201, first)
    assert state(api) == before
    assert_problem(api.post(f"/v1/members/{other['id']}/cards", {"kind": "bank", "pan": PAN}), 409, "card_in_use")
    assert state(api) == before


def test_malformed_bank_card_is_refused(api):
    m = api.enrol()
    blocked = api.enrol()
    api.post(f"/v1/members/{blocked['id']}/block", {"reason": "fraud"})
    bad = PAN[:-1] + "0"
    before = state(api)
    for payload in [
        {"kind": "bank"},
        {"kind": "bank", "pan": bad},
        {"kind": "bank", "pan": "4276-3800-1234-567X"},
        {"kind": "bank", "pan": "12345674"},  # Luhn-valid but too short for a bank card
        {"kind": "loyalty", "pan": PAN},
    ]:
        r = api.post(f"/v1/members/{m['id']}/cards", payload)
        assert_problem(r, 422, "validation_error", "pan")
        assert bad not in r.text and PAN not in r.text
    assert_problem(api.post(f"/v1/members/{m['id']}/cards", {"kind": "debit", "pan": PAN}), 422, "validation_error")
    assert_problem(api.post(f"/v1/members/{blocked['id']}/cards", {"kind": "bank", "pan": PAN}), 409, "member_blocked")
    assert state(api) == before


def _raw_database_text(api: Any) -> str:
    """The database as its server holds it: file bytes on SQLite, every row as text on PostgreSQL."""
    if api.db.dialect == "sqlite":
        path = Path(make_url(api.db.settings.database_url).database)
        files = sorted(path.parent.glob(path.name + "*"))
        assert path in files
        return b"".join(f.read_bytes() for f in files).decode("latin-1")
    out = []
    with api.db.engine.connect() as conn:
        names = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        assert "cards" in names
        for name in names:
            out += conn.execute(text(f'SELECT t::text FROM "{name}" AS t')).scalars().all()  # noqa: S608
    return "\n".join(out)


def test_full_pan_is_never_stored_logged_or_returned(api, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy keeps its own level at WARNING
    m = api.enrol(email="pan.holder@example.com")
    track = f"%B{PAN}^PETROV/IVAN^2512101000000000000?;{PAN}=25121010000000000000?"
    answers = [
        api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN_SPACED}),
        api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN}),
        api.get("/v1/identify", params={"bank_pan": PAN}),
        api.get("/v1/identify", params={"bank_pan": PAN_SPACED}),
        api.get("/v1/identify", params={"track": track}),
        api.get("/v1/identify", params={"track": f";{PAN}=2512?"}),
        api.get("/v1/identify", params={"card": PAN}),
        api.get("/v1/members", params={"card": PAN}),
        api.get("/v1/members", params={"q": PAN}),
        api.get(f"/v1/cards/{PAN}"),
        api.post(f"/v1/cards/{PAN}/block", {"reason": "lost"}),
    ]
    assert [r.status_code for r in answers] == [201, 201, 200, 200, 200, 200, 200, 200, 200, 404, 404]
    for r in answers[2:7]:
        assert r.json()["id"] == m["id"]
    for r in answers:
        assert PAN not in r.text
        assert PAN_SPACED not in r.text

    # Nowhere in the tables...
    stored = all_text(api.db)
    assert pan_hash(TEST_SECRET.encode(), PAN) in stored  # the reading sees the card row
    assert PAN not in stored
    # ...nor in what the database server keeps (file bytes, or every row as text).
    raw = _raw_database_text(api)
    assert "pan.holder@example.com" in raw  # the reading sees the data
    assert PAN not in raw
    assert PAN_SPACED not in raw

    # Nowhere in the logs, at DEBUG, including our access log.
    access = [r for r in caplog.records if r.name == "patron.access"]
    assert len(access) == len(answers) + 1  # and the enrolment
    assert "GET /v1/identify?bank_pan=… 200" in [r.getMessage().rsplit(" ", 1)[0] for r in access]
    assert "GET /v1/cards/************5679 404" in [r.getMessage().rsplit(" ", 1)[0] for r in access]
    # httpx and httpcore log on the test client's side of the wire; everything else is the server's.
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = "\n".join(f"{formatter.format(r)} {r.args!r} {r.__dict__!r}" for r in server)
    assert any(r.name.startswith("sqlalchemy.engine") for r in server)  # SQL was logged too
    assert PAN not in logged
    assert PAN_SPACED not in logged
    assert json.dumps(PAN) not in logged
