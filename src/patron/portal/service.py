"""The member portal: sign-in by a one-time code, the member's session, data export, deletion.

Sign-in codes. Six random digits, valid for CODE_TTL, kept only as an HMAC keyed with the
installation's secret (six digits are a million guesses: an unkeyed hash would be undone in a
blink). A code allows MAX_ATTEMPTS tries, compared in constant time; it can be sent again at most
MAX_SENDS times in all, not sooner than RESEND_AFTER after the last send; and an address can ask
for at most ADDRESS_SENDS_PER_HOUR sends an hour. The answers are the same whether a member has
the address or not: an unknown address gets a sign-in whose code is never right and no message.

Each function here runs in the caller's transaction and returns what happened rather than
raising on a wrong code, so the spent attempt is committed with the answer. The message a
sign-in sends is queued in that transaction; the caller delivers it after the commit.

Every read for the portal takes the signed-in member's id and looks only at that member's rows:
asking for someone else's coupon or transaction is answered as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.cards.models import Card
from patron.errors import NotFound, TooManyRequests, ValidationFailed
from patron.kit import clock
from patron.kit.ids import random_digits
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry
from patron.mail import service as mail
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import MemberPatch
from patron.portal.models import DeletionRequest, PortalSession, SignInCode
from patron.program import service as program_service
from patron.rewards import service as rewards
from patron.rewards.models import Coupon
from patron.segments import service as segments
from patron.tiers.models import TierChange
from patron.transactions.models import Transaction, TransactionLine

CODE_LENGTH = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
MAX_SENDS = 3
RESEND_AFTER = timedelta(seconds=30)
ADDRESS_SENDS_PER_HOUR = 6
SESSION_TTL = timedelta(days=30)

# Renders a sign-in message: (kind, language, context) → (subject, text, html).
Renderer = Callable[[str, str, dict[str, Any]], tuple[str, str, str | None]]


def member_actor(member_id: uuid.UUID) -> Actor:
    return Actor(kind="member", id=str(member_id), name=None)


def _keyed(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _code_hash(secret: bytes, sign_in_id: uuid.UUID, code: str) -> str:
    return _keyed(secret, f"portal-code:{sign_in_id}", code)


def normalize_address(text: str) -> tuple[str, str]:
    """('email', 'anna@example.com') from what a member typed; only email until an SMS gateway exists."""
    value = unicodedata.normalize("NFKC", text).strip()
    if "@" not in value:
        raise ValidationFailed("enter the email address of your membership", field="address")
    return "email", members.normalize_email(value)


def normalize_code(text: str) -> str:
    """Digits as typed on any keyboard: full-width digits (a Chinese IME) and spaces are fine."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if not ch.isspace())


@dataclass(frozen=True)
class SignInStarted:
    sign_in_id: uuid.UUID
    message_id: uuid.UUID | None  # deliver it after the commit; None when no member has the address


def _send_code(
    session: Session, sign_in: SignInCode, member: Member | None, secret: bytes, render: Renderer, now: datetime
) -> uuid.UUID | None:
    code = random_digits(CODE_LENGTH)
    sign_in.code_hash = _code_hash(secret, sign_in.id, code)
    sign_in.sent_at, sign_in.expires_at, sign_in.attempts = now, now + CODE_TTL, 0
    if member is None or member.email is None:
        return None
    program = program_service.get(session)
    minutes = int(CODE_TTL.total_seconds() // 60)
    subject, text, html = render(
        "sign_in_code",
        member.language,
        {"code": code, "minutes": minutes, "first_name": member.first_name or "", "program": program.name},
    )
    message = mail.queue(
        session,
        to=member.email,
        kind="sign_in_code",
        language=member.language,
        subject=subject,
        text=text,
        html=html,
        member_id=member.id,
        sensitive=True,
    )
    return message.id


def _sends_this_hour(session: Session, address_hash: str, now: datetime) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(SignInCode.sends), 0)).where(
            SignInCode.address_hash == address_hash, SignInCode.created_at > now - timedelta(hours=1)
        )
    )
    return int(total or 0)


def start_sign_in(session: Session, address: str, secret: bytes, render: Renderer) -> SignInStarted:
    """Send a code to `address` if a member has it; the answer looks the same if none does."""
    channel, value = normalize_address(address)
    now = clock.now()
    address_hash = _keyed(secret, f"portal-address:{channel}", value)
    if _sends_this_hour(session, address_hash, now) >= ADDRESS_SENDS_PER_HOUR:
        raise TooManyRequests("Too many codes were asked for this address; try again in an hour")
    member = session.scalars(select(Member).where(Member.email == value, Member.status != "erased")).first()
    sign_in = SignInCode(
        id=uuid.UUID(bytes=secrets.token_bytes(16), version=4),
        member_id=member.id if member else None,
        channel=channel,
        address_hash=address_hash,
        code_hash="",
        sends=1,
        attempts=0,
        created_at=now,
        sent_at=now,
        expires_at=now + CODE_TTL,
    )
    session.add(sign_in)
    message_id = _send_code(session, sign_in, member, secret, render, now)
    session.flush()
    return SignInStarted(sign_in.id, message_id)


class ResendRefused(StrEnum):
    TOO_SOON = "too_soon"
    LIMIT = "limit"


@dataclass(frozen=True)
class Resent:
    message_id: uuid.UUID | None
    refused: ResendRefused | None = None
    wait_seconds: int = 0


def _open_sign_in(session: Session, sign_in_id: uuid.UUID | None) -> SignInCode | None:
    if sign_in_id is None:
        return None
    sign_in = session.get(SignInCode, sign_in_id, with_for_update=True, populate_existing=True)
    return sign_in if sign_in is not None and sign_in.used_at is None else None


def resend(session: Session, sign_in_id: uuid.UUID | None, secret: bytes, render: Renderer) -> Resent:
    """A new code for the same sign-in (the old one stops working)."""
    sign_in = _open_sign_in(session, sign_in_id)
    if sign_in is None:
        raise NotFound("This sign-in has ended; ask for a new code")
    now = clock.now()
    if sign_in.sends >= MAX_SENDS or _sends_this_hour(session, sign_in.address_hash, now) >= ADDRESS_SENDS_PER_HOUR:
        return Resent(None, ResendRefused.LIMIT)
    if now < sign_in.sent_at + RESEND_AFTER:
        wait = int((sign_in.sent_at + RESEND_AFTER - now).total_seconds()) + 1
        return Resent(None, ResendRefused.TOO_SOON, wait)
    member = session.get(Member, sign_in.member_id) if sign_in.member_id else None
    if member is not None and member.status == "erased":
        member = None
    sign_in.sends += 1
    return Resent(_send_code(session, sign_in, member, secret, render, now))


class Verdict(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    LOCKED = "locked"  # too many wrong tries: ask for a new code
    ENDED = "ended"  # no such sign-in, or it was used already


@dataclass(frozen=True)
class Verified:
    verdict: Verdict
    member_id: uuid.UUID | None = None
    attempts_left: int = 0


def verify(session: Session, sign_in_id: uuid.UUID | None, code: str, secret: bytes) -> Verified:
    sign_in = _open_sign_in(session, sign_in_id)
    if sign_in is None:
        return Verified(Verdict.ENDED)
    if sign_in.attempts >= MAX_ATTEMPTS:
        return Verified(Verdict.LOCKED)
    now = clock.now()
    if now >= sign_in.expires_at:
        return Verified(Verdict.EXPIRED)
    sign_in.attempts += 1
    given = normalize_code(code)
    # Hash whatever was typed and compare digests in constant time: the time taken says nothing
    # about how much of the code was right.
    matches = hmac.compare_digest(_code_hash(secret, sign_in.id, given), sign_in.code_hash)
    member = session.get(Member, sign_in.member_id) if sign_in.member_id else None
    if not matches or member is None or member.status == "erased":
        left = MAX_ATTEMPTS - sign_in.attempts
        return Verified(Verdict.WRONG if left > 0 else Verdict.LOCKED, attempts_left=left)
    sign_in.used_at = now
    audit.record(session, member_actor(member.id), "portal.sign_in", "member", member.id, {"channel": sign_in.channel})
    return Verified(Verdict.OK, member.id)


# --- Sessions ---------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # 256-bit random tokens: no key or slow hash needed


def open_session(session: Session, member_id: uuid.UUID) -> str:
    """A new portal session for the member; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        PortalSession(token_hash=_token_hash(token), member_id=member_id, created_at=now, expires_at=now + SESSION_TTL)
    )
    return token


def session_member(session: Session, token: str | None) -> Member | None:
    """The member a portal cookie belongs to, while the session is open and the member not erased."""
    if not token:
        return None
    row = session.execute(
        select(PortalSession, Member)
        .join(Member, Member.id == PortalSession.member_id)
        .where(PortalSession.token_hash == _token_hash(token))
    ).first()
    if row is None:
        return None
    portal_session, member = row
    if portal_session.ended_at is not None or portal_session.expires_at <= clock.now() or member.status == "erased":
        return None
    return member


def close_session(session: Session, token: str | None) -> None:
    if not token:
        return
    found = session.scalars(select(PortalSession).where(PortalSession.token_hash == _token_hash(token))).first()
    if found is not None and found.ended_at is None:
        found.ended_at = clock.now()


# --- The member's own data --------------------------------------------------------------------------


def update_profile(session: Session, member_id: uuid.UUID, patch: MemberPatch) -> Member:
    """The member's own changes: names, phone, birth date, language, marketing consents.

    The email is the portal's sign-in, so it is not changed here (the contact centre can)."""
    if patch.email is not None or patch.attributes is not None:
        raise ValidationFailed("the email and attributes are not changed from the portal", field="email")
    consents = patch.consents
    fields = MemberPatch.model_validate(patch.model_dump(exclude_unset=True, exclude={"consents"}))
    member = members.update(session, member_actor(member_id), member_id, fields)
    if consents is not None:
        members.set_marketing_consents(session, member, consents.model_dump(exclude_none=True), channel="web")
    return member


def own_transaction(session: Session, member_id: uuid.UUID, transaction_id: uuid.UUID | str) -> Transaction:
    try:
        key = transaction_id if isinstance(transaction_id, uuid.UUID) else uuid.UUID(str(transaction_id))
    except ValueError as exc:
        raise NotFound("No such transaction") from exc
    txn = session.get(Transaction, key)
    if txn is None or txn.member_id != member_id:
        raise NotFound("No such transaction")
    return txn


def transactions(session: Session, member_id: uuid.UUID, *, limit: int = 50) -> list[Transaction]:
    return list(
        session.scalars(
            select(Transaction)
            .where(Transaction.member_id == member_id)
            .order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
            .limit(limit)
        )
    )


def transaction_lines(session: Session, transaction_id: uuid.UUID) -> list[TransactionLine]:
    return list(
        session.scalars(
            select(TransactionLine)
            .where(TransactionLine.transaction_id == transaction_id)
            .order_by(TransactionLine.position)
        )
    )


def request_deletion(session: Session, member_id: uuid.UUID) -> DeletionRequest:
    """Record the member's wish to have the account deleted (once; asking again returns the same)."""
    pending = session.scalars(
        select(DeletionRequest).where(DeletionRequest.member_id == member_id, DeletionRequest.status == "pending")
    ).first()
    if pending is not None:
        return pending
    request = DeletionRequest(member_id=member_id, channel="web", status="pending", requested_at=clock.now())
    session.add(request)
    session.flush()
    audit.record(session, member_actor(member_id), "member.deletion_requested", "member", member_id)
    return request


def pending_deletion(session: Session, member_id: uuid.UUID) -> DeletionRequest | None:
    return session.scalars(
        select(DeletionRequest).where(DeletionRequest.member_id == member_id, DeletionRequest.status == "pending")
    ).first()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export(session: Session, member_id: uuid.UUID) -> dict[str, Any]:
    """Everything Patron keeps about the member, as JSON-ready data (the right of access).

    Bank cards appear as their last four digits (the full number was never kept); messages
    without their bodies, which may have held sign-in codes."""
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    profile = members.present(session, member).model_dump(mode="json")
    cards = [
        {
            "kind": c.kind,
            "number": c.number,
            "last4": c.last4,
            "status": c.status,
            "created_at": _iso(c.created_at),
        }
        for c in session.scalars(select(Card).where(Card.member_id == member_id).order_by(Card.created_at, Card.id))
    ]
    consents = [
        {
            "kind": e.kind,
            "granted": e.granted,
            "rules_version": e.rules_version,
            "channel": e.channel,
            "recorded_at": _iso(e.recorded_at),
        }
        for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.member_id == member_id).order_by(ConsentEvent.recorded_at)
        )
    ]
    entries = [
        ledger.entry_out(e).model_dump(mode="json")
        for e in session.scalars(select(LedgerEntry).where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id))
    ]
    txns = list(
        session.scalars(select(Transaction).where(Transaction.member_id == member_id).order_by(Transaction.occurred_at))
    )
    lines: dict[uuid.UUID, list[dict[str, Any]]] = {t.id: [] for t in txns}
    if txns:
        for line in session.scalars(
            select(TransactionLine)
            .where(TransactionLine.transaction_id.in_(list(lines)))
            .order_by(TransactionLine.transaction_id, TransactionLine.position)
        ):
            lines[line.transaction_id].append(
                {
                    "sku": line.sku,
                    "name": line.name,
                    "category": line.category,
                    "quantity": line.quantity,
                    "returned_quantity": line.returned_quantity,
                }
            )
    purchases = [{**t.answer, "items": lines[t.id]} for t in txns]
    tier_history = [
        {"from": c.from_code, "to": c.to_code, "reason": c.reason, "changed_at": _iso(c.changed_at)}
        for c in session.scalars(
            select(TierChange).where(TierChange.member_id == member_id).order_by(TierChange.changed_at)
        )
    ]
    messages = [
        {
            "kind": m.kind,
            "to": m.to_address,
            "subject": m.subject,
            "status": m.status,
            "created_at": _iso(m.created_at),
            "sent_at": _iso(m.sent_at),
        }
        for m in mail.for_member(session, member_id)
    ]
    owned = session.scalars(select(Coupon).where(Coupon.member_id == member_id).order_by(Coupon.id)).all()
    coupons = [c.model_dump(mode="json") for c in rewards.coupons_out(session, owned)]
    deletion = [
        {"status": d.status, "requested_at": _iso(d.requested_at), "processed_at": _iso(d.processed_at)}
        for d in session.scalars(select(DeletionRequest).where(DeletionRequest.member_id == member_id))
    ]
    data: dict[str, Any] = {
        "exported_at": clock.now().isoformat(),
        "programme": program_service.get(session).name,
        "member": profile,
        "points": ledger.summary(session, member_id).model_dump(mode="json"),
        "cards": cards,
        "consents": consents,
        "ledger": entries,
        "transactions": purchases,
        "coupons": coupons,
        "tier_history": tier_history,
        "segments": segments.codes_for(session, [member_id])[member_id],
        "messages": messages,
        "deletion_requests": deletion,
    }
    return data
