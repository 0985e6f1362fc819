"""The member portal's services: one-time codes, member sessions, data export, deletion requests."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.access.principal import SYSTEM
from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.db import Database
from patron.errors import TooManyRequests, ValidationFailed
from patron.kit import clock
from patron.mail.models import MailMessage
from patron.mail.templates import render
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import ConsentsIn, ConsentsPatch, MemberCreate, MemberPatch
from patron.portal import service as portal
from patron.portal.models import DeletionRequest, SignInCode
from patron.transactions import service as transactions
from patron.transactions.schemas import ItemIn, TransactionIn
from tests.conftest import TEST_SECRET
from tests.helpers import dump

SECRET = TEST_SECRET.encode()


def enrol(db: Database, email: str, phone: str, first_name: str = "Anna", language: str = "en") -> uuid.UUID:
    data = MemberCreate(
        first_name=first_name,
        last_name="Petrova",
        email=email,
        phone=phone,
        language=language,  # type: ignore[arg-type]
        consents=ConsentsIn(program_rules=True, marketing_email=True),
    )
    return db.write(lambda s: members.enrol(s, SYSTEM, data).id)


def start(db: Database, address: str) -> portal.SignInStarted:
    return db.write(lambda s: portal.start_sign_in(s, address, SECRET, render))


def code_in(db: Database, message_id: uuid.UUID | None) -> str:
    assert message_id is not None
    message = db.read(lambda s: s.get(MailMessage, message_id))
    assert message is not None
    found = re.findall(r"\b\d{6}\b", message.body_text)
    assert len(set(found)) == 1, message.body_text
    return found[0]


def verify(db: Database, sign_in_id: uuid.UUID, code: str) -> portal.Verified:
    return db.write(lambda s: portal.verify(s, sign_in_id, code, SECRET))


def sign_in_row(db: Database, sign_in_id: uuid.UUID) -> SignInCode:
    row = db.read(lambda s: s.get(SignInCode, sign_in_id))
    assert row is not None
    return row


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_code_by_email_signs_the_member_in(db: Database) -> None:
    member_id = enrol(db, "Anna@Example.com", "+79161110001", language="ru")
    started = start(db, "  anna@example.COM ")

    message = db.read(lambda s: s.get(MailMessage, started.message_id))
    assert message is not None
    assert (message.member_id, message.to_address, message.kind, message.language) == (
        member_id,
        "anna@example.com",
        "sign_in_code",
        "ru",
    )
    assert message.sensitive is True and message.status == "queued"
    code = code_in(db, started.message_id)
    assert message.subject.startswith(code)
    row = sign_in_row(db, started.sign_in_id)
    # Only a keyed hash of the code is kept, never the code.
    assert row.code_hash != code and code not in row.code_hash and len(row.code_hash) == 64
    assert (row.member_id, row.sends, row.attempts, row.used_at) == (member_id, 1, 0, None)
    assert row.expires_at == row.created_at + timedelta(minutes=10)

    assert verify(db, started.sign_in_id, code) == portal.Verified(portal.Verdict.OK, member_id)
    assert sign_in_row(db, started.sign_in_id).used_at is not None
    # A code is used once.
    assert verify(db, started.sign_in_id, code).verdict == portal.Verdict.ENDED
    actions = db.read(
        lambda s: list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_id == str(member_id))))
    )
    assert actions.count("portal.sign_in") == 1


def test_unknown_address_looks_the_same_and_sends_nothing(db: Database) -> None:
    enrol(db, "anna@example.com", "+79161110002")
    before = db.read(lambda s: len(list(s.scalars(select(MailMessage)))))
    started = start(db, "nobody@example.com")
    assert started.message_id is None
    assert db.read(lambda s: len(list(s.scalars(select(MailMessage))))) == before
    row = sign_in_row(db, started.sign_in_id)
    assert (row.member_id, row.sends, row.attempts) == (None, 1, 0)
    # Every code is wrong, with the same counting down as for a member.
    for left in (4, 3, 2, 1):
        assert verify(db, started.sign_in_id, "123456") == portal.Verified(portal.Verdict.WRONG, None, left)
    assert verify(db, started.sign_in_id, "123456").verdict == portal.Verdict.LOCKED


def test_wrong_codes_lock_the_sign_in(db: Database) -> None:
    enrol(db, "anna@example.com", "+79161110003")
    started = start(db, "anna@example.com")
    code = code_in(db, started.message_id)
    for left in (4, 3, 2, 1):
        assert verify(db, started.sign_in_id, wrong(code)) == portal.Verified(portal.Verdict.WRONG, None, left)
    assert verify(db, started.sign_in_id, wrong(code)) == portal.Verified(portal.Verdict.LOCKED, None, 0)
    # Locked: not even the right code opens it now, and no attempt is counted any more.
    assert verify(db, started.sign_in_id, code).verdict == portal.Verdict.LOCKED
    assert sign_in_row(db, started.sign_in_id).attempts == portal.MAX_ATTEMPTS
    assert sign_in_row(db, started.sign_in_id).used_at is None


def test_expired_code(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110004")
    at = clock.now()
    with clock.frozen(at):
        first = start(db, "anna@example.com")
        second = start(db, "anna@example.com")
    with clock.frozen(at + timedelta(minutes=10)):
        assert verify(db, first.sign_in_id, code_in(db, first.message_id)).verdict == portal.Verdict.EXPIRED
    assert sign_in_row(db, first.sign_in_id).attempts == 0
    with clock.frozen(at + timedelta(minutes=9, seconds=59)):
        assert verify(db, second.sign_in_id, code_in(db, second.message_id)).member_id == member_id


def test_resend_replaces_the_code_within_limits(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110005")
    at = clock.now()
    with clock.frozen(at):
        started = start(db, "anna@example.com")
    first_code = code_in(db, started.message_id)
    with clock.frozen(at + timedelta(seconds=10)):
        resent = db.write(lambda s: portal.resend(s, started.sign_in_id, SECRET, render))
    assert resent == portal.Resent(None, portal.ResendRefused.TOO_SOON, 21)
    with clock.frozen(at + timedelta(seconds=30)):
        verify(db, started.sign_in_id, wrong(first_code))  # one attempt spent on the first code
        resent = db.write(lambda s: portal.resend(s, started.sign_in_id, SECRET, render))
    assert resent.refused is None and resent.message_id is not None
    second_code = code_in(db, resent.message_id)
    row = sign_in_row(db, started.sign_in_id)
    assert (row.sends, row.attempts, row.sent_at, row.expires_at) == (
        2,
        0,
        at + timedelta(seconds=30),
        at + timedelta(seconds=30, minutes=10),
    )
    with clock.frozen(at + timedelta(seconds=60)):
        third = db.write(lambda s: portal.resend(s, started.sign_in_id, SECRET, render))
        assert third.message_id is not None
        third_code = code_in(db, third.message_id)
        with clock.frozen(at + timedelta(seconds=90)):
            assert db.write(lambda s: portal.resend(s, started.sign_in_id, SECRET, render)) == portal.Resent(
                None, portal.ResendRefused.LIMIT
            )
        if second_code != third_code:  # the replaced code stopped working
            assert verify(db, started.sign_in_id, second_code).verdict == portal.Verdict.WRONG
        assert verify(db, started.sign_in_id, third_code).member_id == member_id


def test_hourly_limit_per_address_the_same_for_members_and_strangers(db: Database) -> None:
    enrol(db, "anna@example.com", "+79161110006")
    at = clock.now()
    for address in ("anna@example.com", "stranger@example.com"):
        with clock.frozen(at):
            for _ in range(portal.ADDRESS_SENDS_PER_HOUR):
                start(db, address)
            before = dump(db)
            with pytest.raises(TooManyRequests):
                start(db, address)
            assert dump(db) == before
        with clock.frozen(at + timedelta(hours=1, seconds=1)):
            start(db, address)  # the window moved on


def test_codes_typed_on_other_keyboards(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110007")
    started = start(db, "ａｎｎａ＠example.com")  # a full-width IME
    code = code_in(db, started.message_id)
    full_width = "".join(chr(ord(ch) - ord("0") + ord("０")) for ch in code)
    assert verify(db, started.sign_in_id, f" {full_width[:3]} {full_width[3:]} ").member_id == member_id


def test_address_must_be_an_email(db: Database) -> None:
    with pytest.raises(ValidationFailed):
        start(db, "+79161234567")
    with pytest.raises(ValidationFailed):
        start(db, "not an email@")


def test_member_sessions(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110008")
    other_id = enrol(db, "boris@example.com", "+79161110009")
    at = clock.now()
    with clock.frozen(at):
        token = db.write(lambda s: portal.open_session(s, member_id))
        other = db.write(lambda s: portal.open_session(s, other_id))

    def who(t: str | None) -> uuid.UUID | None:
        found = db.read(lambda s: portal.session_member(s, t))
        return found.id if found else None

    assert who(token) == member_id and who(other) == other_id
    assert who(None) is None and who("") is None and who(token[:-1] + "x") is None
    with clock.frozen(at + portal.SESSION_TTL):
        assert who(token) is None
    db.write(lambda s: portal.close_session(s, token))
    assert who(token) is None
    assert who(other) == other_id


def purchase(db: Database, member_id: uuid.UUID, external_id: str, total: str) -> uuid.UUID:
    data = TransactionIn(
        external_id=external_id,
        member_id=member_id,
        items=[ItemIn(sku="OIL-5W30", name="Oil change", category="service", unit_price=Decimal(total))],
    )
    return db.write(lambda s: transactions.post(s, SYSTEM, data, SECRET).id)


def test_export_holds_the_member_and_no_one_else(db: Database) -> None:
    anna = enrol(db, "anna@example.com", "+79161110010")
    boris = enrol(db, "boris@example.com", "+79161110011", first_name="Boris")
    anna_card = db.write(lambda s: cards.add_loyalty_card(s, SYSTEM, anna, None).number)
    boris_card = db.write(lambda s: cards.add_loyalty_card(s, SYSTEM, boris, None).number)
    db.write(lambda s: cards.add_bank_card(s, SYSTEM, anna, "4111111111111111", SECRET))
    anna_txn = purchase(db, anna, "till-1", "2500.00")
    boris_txn = purchase(db, boris, "till-2", "900.00")
    started = start(db, "anna@example.com")
    db.write(lambda s: portal.request_deletion(s, anna))

    data = db.read(lambda s: portal.export(s, anna))
    text = json.dumps(data, ensure_ascii=False)

    assert data["member"]["id"] == str(anna)
    assert data["member"]["email"] == "anna@example.com"
    assert data["member"]["phone"] == "+79161110010"
    assert [c["number"] for c in data["cards"] if c["kind"] == "loyalty"] == [anna_card]
    assert [(c["number"], c["last4"]) for c in data["cards"] if c["kind"] == "bank"] == [(None, "1111")]
    assert [t["id"] for t in data["transactions"]] == [str(anna_txn)]
    assert data["transactions"][0]["total"] == "2500.00"
    assert data["transactions"][0]["items"] == [
        {"sku": "OIL-5W30", "name": "Oil change", "category": "service", "quantity": "1", "returned_quantity": "0"}
    ]
    assert all(e["transaction_id"] in (None, str(anna_txn)) for e in data["ledger"])
    assert sum(e["points"] for e in data["ledger"]) == data["points"]["available"] + data["points"]["pending"]
    assert {c["kind"] for c in data["consents"]} == {"program_rules", "marketing_email"}
    assert [(m["kind"], m["to"]) for m in data["messages"]] == [("sign_in_code", "anna@example.com")]
    assert "body" not in json.dumps(data["messages"])  # the code the message held is not exported
    assert [d["status"] for d in data["deletion_requests"]] == ["pending"]
    assert started.message_id is not None
    # Nothing of Boris: not his id, email, phone, card, purchase or name.
    for foreign in (str(boris), "boris@example.com", "+79161110011", boris_card, str(boris_txn), "Boris"):
        assert foreign not in text
    assert "4111111111111111" not in text


def test_deletion_request_recorded_once(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110012")
    first = db.write(lambda s: portal.request_deletion(s, member_id).id)
    again = db.write(lambda s: portal.request_deletion(s, member_id).id)
    assert first == again
    rows = db.read(lambda s: list(s.scalars(select(DeletionRequest))))
    assert [(r.member_id, r.status, r.channel, r.processed_at) for r in rows] == [(member_id, "pending", "web", None)]
    assert db.read(lambda s: portal.pending_deletion(s, member_id)) is not None
    audits = db.read(
        lambda s: list(s.scalars(select(AuditEntry).where(AuditEntry.action == "member.deletion_requested")))
    )
    assert [(a.actor_kind, a.actor_id, a.entity_id) for a in audits] == [("member", str(member_id), str(member_id))]


def test_profile_changes_by_the_member(db: Database) -> None:
    member_id = enrol(db, "anna@example.com", "+79161110013")
    patch = MemberPatch(
        first_name="Анна",
        phone="8 916 111-00-99",
        language="zh",
        consents=ConsentsPatch(marketing_email=False, marketing_sms=True),
    )
    db.write(lambda s: portal.update_profile(s, member_id, patch))

    def read(s: Session) -> tuple[Member, list[tuple[str, bool, str]]]:
        member = members.get(s, member_id)
        events = [
            (e.kind, e.granted, e.channel)
            for e in s.scalars(
                select(ConsentEvent).where(ConsentEvent.member_id == member_id).order_by(ConsentEvent.recorded_at)
            )
        ]
        return member, events

    member, events = db.read(read)
    assert (member.first_name, member.phone, member.language, member.email) == (
        "Анна",
        "+79161110099",
        "zh",
        "anna@example.com",
    )
    assert (member.marketing_email, member.marketing_sms) == (False, True)
    assert sorted(events[2:]) == [("marketing_email", False, "web"), ("marketing_sms", True, "web")]
    before = dump(db)
    with pytest.raises(ValidationFailed):
        db.write(lambda s: portal.update_profile(s, member_id, MemberPatch(email="new@example.com")))
    assert dump(db) == before


def test_own_transaction_is_scoped_to_the_member(db: Database) -> None:
    anna = enrol(db, "anna@example.com", "+79161110014")
    boris = enrol(db, "boris@example.com", "+79161110015")
    txn = purchase(db, boris, "till-3", "100.00")
    from patron.errors import NotFound

    assert db.read(lambda s: portal.own_transaction(s, boris, txn).id) == txn
    for asked in (txn, str(txn), "not-a-uuid"):
        with pytest.raises(NotFound):
            db.read(lambda s, asked=asked: portal.own_transaction(s, anna, asked))  # type: ignore[misc]
