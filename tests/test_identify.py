"""GET /v1/identify: the customer at the till, by card, phone, email, swipe or bank card."""

from __future__ import annotations

from typing import Any

import pytest

from patron.kit.luhn import with_check_digit
from tests.helpers import assert_problem, state

PAN = "2202200000000016"  # Luhn-valid bank card number for the tests, not a real card
EN = "`qwertyuiop[]asdfghjkl;'zxcvbnm,./~QWERTYUIOP{}ASDFGHJKL:\"ZXCVBNM<>?@#$^&"
RU = 'ёйцукенгшщзхъфывапролджэячсмитьбю.ЁЙЦУКЕНГШЩЗХЪФЫВАПРОЛДЖЭЯЧСМИТЬБЮ,"№;:?'
TO_RU = str.maketrans(EN, RU)


def russian_layout(keys: str) -> str:
    """What a reader typing `keys` on a US keyboard produces when the till is set to Russian."""
    return keys.translate(TO_RU)


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture
def holder(api: Any) -> dict[str, Any]:
    m = api.enrol(first_name="Ivan", last_name="Petrov", email="Ivan.Petrov@Example.com", phone="+79161234567")
    card = api.post(f"/v1/members/{m['id']}/cards", {"kind": "loyalty"}).json()["number"]
    r = api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": PAN})
    assert r.status_code == 201, r.text
    return {"member": api.get(f"/v1/members/{m['id']}").json(), "card": card}


def identify(api: Any, role: str = "cashier", **params: str) -> Any:
    return api.get("/v1/identify", params=params, role=role)


def assert_found(r: Any, member: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text
    assert r.json() == member


def test_by_card_or_member_number_as_typed(api, holder):
    c, member = holder["card"], holder["member"]
    for typed in [
        c,
        f"{c[:4]} {c[4:8]} {c[8:12]} {c[12:]}",
        f"{c[:4]}-{c[4:8]}-{c[8:12]}-{c[12:]}",
        f"  {c}\n",
        f"{c[:4]}.{c[4:8]} {c[8:]}",
    ]:
        assert_found(identify(api, card=typed), member)
    assert_found(identify(api, card=holder["member"]["number"]), holder["member"])


def test_by_phone_in_any_format_and_email_in_any_case(api, holder):
    for phone in [
        "+79161234567",
        "+7 916 123-45-67",
        "8 (916) 123-45-67",
        "89161234567",
        "9161234567",
        "8-916-1234567",
    ]:
        assert_found(identify(api, phone=phone), holder["member"])
    for email in ["ivan.petrov@example.com", "IVAN.PETROV@EXAMPLE.COM", " Ivan.Petrov@Example.Com "]:
        assert_found(identify(api, email=email), holder["member"])


def test_by_magnetic_stripe(api, holder):
    c, member = holder["card"], holder["member"]
    track1 = f"%B{c}^PETROV/IVAN^2512101000000000000?"
    track2 = f";{c}=2512101000000?"
    for swipe in [
        track1,
        track2,
        track1 + track2,
        track1 + track2 + "\n",
        f";{c}?",  # track 2 with no separator or expiry
        f"%b{c}^^?",  # lower-case format code, empty name
    ]:
        assert_found(identify(api, track=swipe), member)


def test_by_magnetic_stripe_typed_with_a_russian_layout_or_in_full_width(api, holder):
    c, member = holder["card"], holder["member"]
    # As the reader types them with the till in Russian layout: ; → ж, ? → ",", ^ → :, B → И.
    assert russian_layout(f";{c}=2512?") == f"ж{c}=2512,"
    assert russian_layout(f"%B{c}^NAME^2512?") == f"%И{c}:ТФЬУ:2512,"
    for swipe in [
        f"ж{c}=2512,",
        f"%И{c}:ТФЬУ:2512,",
        f"%И{c}:ЗУЕКЩМ.ШМФТ:2512101000000,ж{c}=2512101000000,",
        russian_layout(f"%B{c}^PETROV/IVAN^2512101?;{c}=2512101?"),
    ]:
        assert_found(identify(api, track=swipe), member)
    # A Chinese input method in full-width mode.
    for swipe in [
        full_width(f";{c}=2512?"),
        f"；{c}＝2512？",
        full_width(f"%B{c}^PETROV/IVAN^2512?"),
        full_width(f"%B{c}^PETROV/IVAN^2512?;{c}=2512?"),
    ]:
        assert_found(identify(api, track=swipe), member)


def test_by_bank_card_and_every_role_may_identify(api, holder):
    member = holder["member"]
    for params in [
        {"bank_pan": PAN},
        {"bank_pan": "2202 2000 0000 0016"},
        {"track": f"%B{PAN}^PETROV/IVAN^2512101000000000000?;{PAN}=25121010000000000000?"},
        {"track": f";{PAN}=2512101?"},
        {"track": russian_layout(f";{PAN}=2512101?")},
        {"card": PAN},  # a bank card number typed into the card field
    ]:
        assert_found(identify(api, **params), member)

    for role in ("cashier", "agent", "marketer", "analyst", "admin"):
        assert_found(identify(api, role=role, phone="+79161234567"), holder["member"])


def test_blocked_member_is_still_identified(api, holder):
    member = holder["member"]
    api.post(f"/v1/members/{member['id']}/block", {"reason": "fraud"})
    blocked = {**member, "status": "blocked"}
    assert_found(identify(api, card=holder["card"]), blocked)
    assert_found(identify(api, phone="+79161234567"), blocked)
    assert_found(identify(api, bank_pan=PAN), blocked)


def test_blocked_card_is_refused(api, holder):
    c = holder["card"]
    api.post(f"/v1/cards/{c}/block", {"reason": "stolen"})
    before = state(api)
    assert_problem(identify(api, card=c), 409, "card_blocked")
    assert_problem(identify(api, track=f";{c}=2512?"), 409, "card_blocked")
    # The member is still there by other means.
    assert_found(identify(api, phone="+79161234567"), holder["member"])
    assert state(api) == before


def test_replaced_card_is_refused_and_the_new_one_works(api, holder):
    old = holder["card"]
    new = api.post(f"/v1/cards/{old}/replace").json()["number"]
    assert_problem(identify(api, card=old), 409, "card_blocked")
    assert_problem(identify(api, track=f"%B{old}^PETROV/IVAN^2512?"), 409, "card_blocked")
    assert_found(identify(api, card=new), holder["member"])


def test_unknown_404_malformed_422_and_exactly_one_parameter(api, holder):
    issued = api.post("/v1/cards/batch", {"count": 1}).json()["items"][0]["number"]
    before = state(api)
    for params in [
        {"card": with_check_digit("780012345678901")},
        {"card": "12345678"},
        {"card": issued},
        {"phone": "+79030000000"},
        {"email": "nobody@example.com"},
        {"email": "not even an email"},
        {"track": f";{with_check_digit('780012345678901')}=2512?"},
        {"bank_pan": with_check_digit("220220000000002")},
    ]:
        assert_problem(identify(api, **params), 404, "not_found")

    for params, field in [
        ({"card": "7800-ABCD"}, "card"),
        ({"phone": "abc"}, "phone"),
        ({"phone": "123"}, "phone"),
        ({"track": "hello"}, "track"),
        ({"track": ";12345?"}, "track"),  # too short for a card number
        ({"track": f"%B{PAN}^X^?;{with_check_digit('780012345678901')}=2512?"}, "track"),  # two cards
        ({"bank_pan": PAN[:-1] + "0"}, "bank_pan"),
        ({"bank_pan": "1234"}, "bank_pan"),
    ]:
        assert_problem(identify(api, **params), 422, "validation_error", field)

    c = holder["card"]
    for params in [
        {},
        {"card": ""},
        {"card": c, "phone": "+79161234567"},
        {"email": "ivan.petrov@example.com", "phone": "+79161234567"},
        {"track": f";{c}?", "card": c},
        {"bank_pan": PAN, "card": c, "email": "x@example.com"},
    ]:
        assert_problem(identify(api, **params), 422, "validation_error")
    assert state(api) == before
