from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel.numbers import is_currency
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.errors import ValidationFailed
from patron.kit import clock
from patron.kit.money import from_minor, to_minor
from patron.program.models import PROGRAM_ID, Program
from patron.program.schemas import Expiry, ProgramOut, ProgramPatch

# point_value_minor is a 32-bit INTEGER column.
MAX_POINT_VALUE_MINOR = 2**31 - 1

DEFAULTS = {
    "name": "Loyalty programme",
    "currency": "RUB",
    "timezone": "Europe/Moscow",
    "phone_region": "RU",
    "point_value_minor": 100,
    "pending_days": 0,
    "expiry_policy": "none",
    "expiry_days": None,
    "rules_version": "1",
    "card_prefix": "7800",
    "tier_metric": "points",
    "tier_window_days": None,
    "config_version": 0,
}


def get(session: Session, *, for_update: bool = False) -> Program:
    program = session.get(Program, PROGRAM_ID, with_for_update=for_update)
    if program is None:  # the migration seeds it; an empty table means someone deleted it
        program = Program(id=PROGRAM_ID, updated_at=clock.now(), **DEFAULTS)
        session.add(program)
        session.flush()
    # A session holds loaded rows only while something refers to them. Kept here, the programme is
    # read once per session, not again by every caller (rules, tiers, each item of a list).
    session.info["patron.program"] = program
    return program


def bump_config(session: Session) -> None:
    """Mark the rules or tiers as changed: every process reloads them at its next transaction."""
    program = get(session, for_update=True)
    program.config_version += 1


def zone(program: Program) -> ZoneInfo:
    return ZoneInfo(program.timezone)


def point_value(program: Program) -> Decimal:
    return from_minor(program.point_value_minor, program.currency)


def to_out(program: Program) -> ProgramOut:
    return ProgramOut(
        name=program.name,
        currency=program.currency,
        timezone=program.timezone,
        phone_region=program.phone_region,
        point_value=point_value(program),
        pending_days=program.pending_days,
        expiry=Expiry(policy=program.expiry_policy, days=program.expiry_days),
        rules_version=program.rules_version,
    )


def update(session: Session, actor: Actor, patch: ProgramPatch) -> Program:
    program = get(session, for_update=True)
    changes = patch.model_dump(exclude_unset=True)
    # Read before the currency changes: the stored minor units only mean something in the old one.
    current_value = point_value(program)
    currency = (patch.currency or program.currency).upper()
    if patch.currency is not None:
        if not is_currency(currency):
            raise ValidationFailed("not an ISO 4217 currency code", field="currency")
        program.currency = currency
    if patch.timezone is not None:
        try:
            ZoneInfo(patch.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationFailed("not an IANA time zone such as Europe/Moscow", field="timezone") from exc
        program.timezone = patch.timezone
    if patch.phone_region is not None:
        region = patch.phone_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationFailed("not a country code such as RU or CN", field="phone_region")
        program.phone_region = region
    if "point_value" in changes or patch.currency is not None:
        value = patch.point_value if patch.point_value is not None else current_value
        if value <= 0:
            raise ValidationFailed("point_value must be above zero", field="point_value")
        try:
            minor = to_minor(value, currency)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="point_value") from exc
        if minor > MAX_POINT_VALUE_MINOR:
            raise ValidationFailed("point_value is too large", field="point_value")
        program.point_value_minor = minor
    if patch.name is not None:
        program.name = patch.name
    if patch.pending_days is not None:
        program.pending_days = patch.pending_days
    if patch.expiry is not None:
        if patch.expiry.policy == "after_days" and patch.expiry.days is None:
            raise ValidationFailed("after_days expiry needs days", field="expiry.days")
        program.expiry_policy = patch.expiry.policy
        program.expiry_days = patch.expiry.days if patch.expiry.policy == "after_days" else None
    if patch.rules_version is not None:
        program.rules_version = patch.rules_version
    program.updated_at = clock.now()
    audit.record(session, actor, "program.update", "program", str(PROGRAM_ID), {"fields": sorted(changes)})
    return program
