"""Enrolment, profile changes, blocking and search of members."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.cards.models import Card
from patron.errors import MemberBlocked, MemberExists, NotFound, SelfReferral, ValidationFailed
from patron.kit import clock
from patron.kit.cards_text import clean_card_number
from patron.kit.ids import dictation_code, random_digits
from patron.kit.luhn import with_check_digit
from patron.kit.pagination import page
from patron.kit.phones import InvalidPhone, normalize_phone
from patron.ledger.models import PointAccount
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import (
    ConsentsOut,
    MemberCreate,
    MemberOut,
    MemberPatch,
    PointsSummary,
    TierRef,
)
from patron.program import service as program_service
from patron.rules import bonuses, engine
from patron.segments import service as segments
from patron.tiers import service as tiers

MARKETING = ("marketing_email", "marketing_sms", "marketing_push")


def name_key(first_name: str | None, last_name: str | None) -> str | None:
    """The form names are searched in: "first last", case-folded."""
    joined = " ".join(part for part in (first_name, last_name) if part)
    return joined.casefold() or None


def normalize_email(text: str) -> str:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed("not a valid email address", field="email") from exc
    return result.normalized.lower()


def phone_for(session: Session, text: str) -> str:
    region = program_service.get(session).phone_region
    try:
        return normalize_phone(text, region)
    except InvalidPhone as exc:
        raise ValidationFailed("not a valid phone number", field="phone") from exc


def _unique_code(session: Session, column: InstrumentedAttribute[str], make: Callable[[], str]) -> str:
    for _ in range(20):
        code = make()
        if session.scalar(select(func.count()).where(column == code)) == 0:
            return code
    raise RuntimeError("could not find a free code")  # pragma: no cover - 20 collisions in a row


def new_member_number(session: Session) -> str:
    # 10 digits, the last a Luhn check digit, so a mistyped number is caught before any lookup.
    return _unique_code(session, Member.number, lambda: with_check_digit("1" + random_digits(8)))


def new_referral_code(session: Session) -> str:
    return _unique_code(session, Member.referral_code, lambda: dictation_code(8))


def _refuse_duplicates(session: Session, email: str | None, phone: str | None, exclude: uuid.UUID | None) -> None:
    conds = []
    if email:
        conds.append(Member.email == email)
    if phone:
        conds.append(Member.phone == phone)
    if not conds:
        return
    stmt = select(Member.id).where(or_(*conds))
    if exclude is not None:
        stmt = stmt.where(Member.id != exclude)
    if session.scalars(stmt).first() is not None:
        raise MemberExists("A member with this email or phone already exists")


def _refuse_self_referral(referrer: Member, data: MemberCreate) -> None:
    """The code's owner enrolling again under another email or phone (a shared email or phone is
    already `member_exists`): the same name and the same birth date say it is the same person."""
    if (
        data.birth_date is not None
        and referrer.birth_date == data.birth_date
        and referrer.name_key == name_key(data.first_name, data.last_name)
    ):
        raise SelfReferral("The referral code belongs to the member who is enrolling")


def enrol(session: Session, actor: Actor, data: MemberCreate, *, welcome: bool = True) -> Member:
    if not data.consents.program_rules:
        raise ValidationFailed("the member has to accept the programme rules", field="consents.program_rules")
    if not data.email and not data.phone:
        raise ValidationFailed("give an email or a phone (or both)", field="email")
    email = normalize_email(data.email) if data.email else None
    phone = phone_for(session, data.phone) if data.phone else None
    if data.birth_date is not None:
        _check_birth_date(data.birth_date)
    referrer = None
    if data.referral_code:
        referrer = session.scalars(select(Member).where(Member.referral_code == data.referral_code.upper())).first()
        if referrer is None or referrer.status == "erased":
            raise ValidationFailed("no member has this referral code", field="referral_code")
    _refuse_duplicates(session, email, phone, None)
    if referrer is not None:
        _refuse_self_referral(referrer, data)
    referrer_id = referrer.id if referrer is not None else None
    program = program_service.get(session)
    now = clock.now()
    member = Member(
        number=new_member_number(session),
        first_name=data.first_name,
        last_name=data.last_name,
        name_key=name_key(data.first_name, data.last_name),
        email=email,
        phone=phone,
        birth_date=data.birth_date,
        language=data.language,
        status="active",
        channel=data.channel,
        location=data.location or actor.location,
        tier_code=tiers.base_tier(session).code,
        referral_code=new_referral_code(session),
        referred_by_id=referrer_id,
        attributes=dict(data.attributes),
        rules_version=program.rules_version,
        rules_accepted_at=now,
        marketing_email=data.consents.marketing_email,
        marketing_sms=data.consents.marketing_sms,
        marketing_push=data.consents.marketing_push,
        enrolled_at=now,
        updated_at=now,
    )
    session.add(member)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent enrolment took the email or phone first
        raise MemberExists("A member with this email or phone already exists") from exc
    account = PointAccount(
        member_id=member.id, available=0, pending=0, lifetime_earned=0, redeemed=0, expired=0, updated_at=now
    )
    session.add(account)
    session.add(
        ConsentEvent(
            member_id=member.id,
            kind="program_rules",
            granted=True,
            rules_version=program.rules_version,
            channel=data.channel,
            recorded_at=now,
        )
    )
    for kind in MARKETING:
        if getattr(data.consents, kind):
            session.add(
                ConsentEvent(member_id=member.id, kind=kind, granted=True, channel=data.channel, recorded_at=now)
            )
    audit.record(session, actor, "member.enrol", "member", member.id, {"channel": data.channel})
    if welcome:
        session.flush()
        bonuses.award(
            session,
            member,
            account,
            "welcome",
            engine.Occasion(at=now, channel=data.channel, location=member.location),
            actor,
        )
    return member


def _check_birth_date(value: date) -> None:
    today = clock.now().date()
    if value > today or value.year < 1900:
        raise ValidationFailed("birth_date must be a real date in the past", field="birth_date")


def get(session: Session, member_id: uuid.UUID | str, *, for_update: bool = False) -> Member:
    try:
        key = member_id if isinstance(member_id, uuid.UUID) else uuid.UUID(str(member_id))
    except ValueError as exc:
        raise NotFound("No such member") from exc
    member = session.get(Member, key, with_for_update=for_update, populate_existing=for_update)
    if member is None:
        raise NotFound("No such member")
    return member


def require_active(member: Member) -> None:
    if member.status == "blocked":
        raise MemberBlocked("The member is blocked and cannot earn, redeem or claim")
    if member.status == "erased":
        raise NotFound("No such member")


def update(session: Session, actor: Actor, member_id: uuid.UUID, patch: MemberPatch) -> Member:
    member = get(session, member_id, for_update=True)
    if member.status == "erased":
        raise NotFound("No such member")
    changes = patch.model_dump(exclude_unset=True)
    email = phone = None
    if "email" in changes:
        email = normalize_email(patch.email) if patch.email else None
    if "phone" in changes:
        phone = phone_for(session, patch.phone) if patch.phone else None
    new_email = email if "email" in changes else member.email
    new_phone = phone if "phone" in changes else member.phone
    if not new_email and not new_phone:
        raise ValidationFailed("a member keeps an email or a phone (or both)", field="email")
    _refuse_duplicates(session, email, phone, member.id)
    for name in ("first_name", "last_name", "language"):
        if name in changes:
            if changes[name] is None:
                raise ValidationFailed(f"{name} cannot be empty", field=name)
            setattr(member, name, changes[name])
    member.name_key = name_key(member.first_name, member.last_name)
    if "birth_date" in changes:
        if patch.birth_date is not None:
            _check_birth_date(patch.birth_date)
        member.birth_date = patch.birth_date
    member.email, member.phone = new_email, new_phone
    if patch.attributes is not None:
        attrs = dict(member.attributes or {})
        for key, value in patch.attributes.items():
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
        member.attributes = attrs
    if patch.consents is not None:
        set_marketing_consents(session, member, patch.consents.model_dump(exclude_none=True), channel="call_center")
    member.updated_at = clock.now()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise MemberExists("A member with this email or phone already exists") from exc
    audit.record(session, actor, "member.update", "member", member.id, {"fields": sorted(changes)})
    return member


def set_marketing_consents(session: Session, member: Member, values: dict[str, bool], *, channel: str) -> None:
    now = clock.now()
    for kind, granted in values.items():
        if kind in MARKETING and getattr(member, kind) != granted:
            setattr(member, kind, granted)
            session.add(ConsentEvent(member_id=member.id, kind=kind, granted=granted, channel=channel, recorded_at=now))


def block(session: Session, actor: Actor, member_id: uuid.UUID, reason: str) -> Member:
    member = get(session, member_id, for_update=True)
    if member.status == "erased":
        raise NotFound("No such member")
    if member.status != "blocked":
        member.status = "blocked"
        member.block_reason = reason
        member.updated_at = clock.now()
        audit.record(session, actor, "member.block", "member", member.id, {"reason": reason})
    return member


def unblock(session: Session, actor: Actor, member_id: uuid.UUID) -> Member:
    member = get(session, member_id, for_update=True)
    if member.status == "erased":
        raise NotFound("No such member")
    if member.status == "blocked":
        member.status = "active"
        member.block_reason = None
        member.updated_at = clock.now()
        audit.record(session, actor, "member.unblock", "member", member.id)
    return member


def search_statement(
    session: Session, *, q: str | None, phone: str | None, email: str | None, card: str | None
) -> Select[Member]:
    stmt = select(Member).where(Member.status != "erased")
    if phone:
        stmt = stmt.where(Member.phone == phone_for(session, phone))
    if email:
        stmt = stmt.where(Member.email == email.strip().lower())
    if card:
        try:
            number = clean_card_number(card)
        except ValueError as exc:
            raise ValidationFailed("a card number has only digits", field="card") from exc
        holder = select(Card.member_id).where(Card.number == number)
        stmt = stmt.where(or_(Member.id.in_(holder), Member.number == number))
    if q and q.strip():
        text = q.strip()
        escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        conds = [
            Member.name_key.like(like, escape="\\"),
            Member.email.like(like, escape="\\"),
            Member.number == text,
        ]
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) >= 4:
            conds.append(Member.phone.like(f"%{digits}%"))
            conds.append(Member.id.in_(select(Card.member_id).where(Card.number == digits)))
        stmt = stmt.where(or_(*conds))
    return stmt


def search(
    session: Session,
    *,
    q: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    card: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Member], str | None]:
    stmt = search_statement(session, q=q, phone=phone, email=email, card=card)
    return page(session, stmt, Member.id, limit=limit, cursor=cursor)


def present_many(session: Session, members: Sequence[Member]) -> list[MemberOut]:
    """Members as the API shows them, with balances, tiers and segments loaded in a few queries."""
    if not members:
        return []
    ids = [m.id for m in members]
    accounts = {a.member_id: a for a in session.scalars(select(PointAccount).where(PointAccount.member_id.in_(ids)))}
    tier_names = tiers.names(session)
    progress = tiers.progress(session, ids, {m.id: m.tier_code for m in members})
    member_segments = segments.codes_for(session, ids)
    out = []
    for m in members:
        account = accounts.get(m.id)
        out.append(
            MemberOut(
                id=m.id,
                number=m.number,
                first_name=m.first_name,
                last_name=m.last_name,
                email=m.email,
                phone=m.phone,
                birth_date=m.birth_date,
                language=m.language,
                status=m.status,
                tier=TierRef(code=m.tier_code, name=tier_names.get(m.tier_code, m.tier_code)),
                tier_progress=progress[m.id],
                points=PointsSummary(
                    available=account.available if account else 0, pending=account.pending if account else 0
                ),
                segments=member_segments[m.id],
                referral_code=m.referral_code,
                enrolled_at=m.enrolled_at,
                channel=m.channel,
                consents=ConsentsOut(
                    program_rules=True,
                    rules_version=m.rules_version,
                    rules_accepted_at=m.rules_accepted_at,
                    marketing_email=m.marketing_email,
                    marketing_sms=m.marketing_sms,
                    marketing_push=m.marketing_push,
                ),
                attributes=dict(m.attributes or {}),
            )
        )
    return out


def present(session: Session, member: Member) -> MemberOut:
    return present_many(session, [member])[0]
