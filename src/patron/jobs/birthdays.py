"""birthday-bonuses: the active `birthday` earning rules pay members on their birthday.

The birthday is the month and day of `birth_date` on the date that `as_of` is in the programme's
time zone; someone born on 29 February celebrates on 28 February in other years. Each member is
paid at most once per calendar year: the `birthday_awards` row (member, year) is written in the
same transaction as the points, so running the job again, or again later that day, pays nobody
twice. A member whose rules give nothing that day (a tier or segment condition, a weekday) gets no
row, so a rule switched on later that day still pays them.

The day's members are selected in SQL, CHUNK at a time in id order. Each chunk is one transaction:
lock the chunk's point accounts in key order, drop those who were paid meanwhile (a concurrent
run), evaluate the rules once per distinct (tier, segments, channel, location) and credit the
points as `bonus` entries with their rule, spendable at once and expiring by the programme's
policy, like every other bonus (rules/bonuses.py).
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import exists, extract, insert, select
from sqlalchemy.orm import Session

from patron.access.principal import SYSTEM
from patron.db import Database, among
from patron.jobs.models import BirthdayAward
from patron.jobs.points import _lock_accounts
from patron.kit import clock
from patron.ledger import policy
from patron.ledger import service as ledger
from patron.members.models import Member
from patron.program import service as program_service
from patron.rules import engine
from patron.rules import service as rules_service
from patron.segments import service as segments
from patron.tiers import service as tiers

CHUNK = 5000
KIND = "birthday"
Progress = Callable[[int], None]


def celebrated_days(day: date) -> tuple[int, list[int]]:
    """The (month, days) of birth dates celebrated on `day`: 28 February also celebrates 29
    February births when the year has no 29 February."""
    days = [day.day]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        days.append(29)
    return day.month, days


def _find(session: Session, local_day: date, after: uuid.UUID | None) -> list[uuid.UUID]:
    month, days = celebrated_days(local_day)
    awarded = exists().where(BirthdayAward.member_id == Member.id, BirthdayAward.year == local_day.year)
    stmt = select(Member.id).where(
        Member.status == "active",
        Member.birth_date.is_not(None),
        extract("month", Member.birth_date) == month,
        extract("day", Member.birth_date).in_(days),
        ~awarded,
    )
    if after is not None:
        stmt = stmt.where(Member.id > after)
    return list(session.scalars(stmt.order_by(Member.id).limit(CHUNK)))


def _pay(session: Session, as_of: datetime, local_day: date, ids: list[uuid.UUID]) -> tuple[int, int]:
    """Pay one chunk; returns (members paid, points)."""
    accounts = _lock_accounts(session, ids)
    for member_id in ids:
        if member_id not in accounts:  # members from before accounts existed
            accounts[member_id] = ledger.lock_account(session, member_id)
    dialect = session.get_bind().dialect.name
    paid_before = set(
        session.scalars(
            select(BirthdayAward.member_id).where(
                among(BirthdayAward.member_id, ids, dialect), BirthdayAward.year == local_day.year
            )
        )
    )
    members = session.execute(
        select(Member.id, Member.tier_code, Member.channel, Member.location)
        .where(among(Member.id, ids, dialect), Member.status == "active")
        .order_by(Member.id)
    ).all()
    rules = rules_service.active_rules(session, (KIND,))
    program = program_service.get(session)
    tz = program_service.zone(program)
    steps = {t.code: t for t in tiers.ladder(session)}
    member_segments = (
        segments.codes_for(session, ids) if any(r.conditions.segments for r in rules) else dict.fromkeys(ids, [])
    )
    now = clock.now()
    expires_at = policy.expires_at(program, as_of)
    results: dict[tuple[str, frozenset[str], str, str | None], engine.Result] = {}
    awards = []
    paid = points = 0
    for member_id, tier_code, channel, location in members:
        if member_id in paid_before:
            continue
        key = (tier_code, frozenset(member_segments[member_id]), channel, location)
        if key not in results:
            tier = steps.get(tier_code)
            context = engine.MemberContext(
                tier_code=tier_code,
                tier_name=tier.name if tier else tier_code,
                tier_multiplier=tier.multiplier if tier else Decimal(1),
                segments=key[1],
            )
            # The member's own channel and location stand for the occasion's: a birthday rule
            # restricted to a location pays the members who enrolled there.
            when = engine.Occasion(at=as_of, channel=channel, location=location)
            results[key] = engine.bonus(KIND, rules, context, when, tz)
        result = results[key]
        if result.points <= 0:
            continue
        account = accounts[member_id]
        for c in result.breakdown:
            ledger.credit(
                session,
                account,
                "bonus",
                c.points,
                ledger.Source(actor=SYSTEM, rule_id=c.rule_id, reason=c.rule_name),
                available_at=now,
                expires_at=expires_at,
            )
        awards.append({"member_id": member_id, "year": local_day.year, "points": result.points, "awarded_at": now})
        paid += 1
        points += result.points
    if awards:
        session.execute(insert(BirthdayAward), awards)
    return paid, points


def birthday_bonuses(db: Database, as_of: datetime, progress: Progress | None = None) -> dict[str, int]:
    def today(s: Session) -> tuple[date, bool]:
        tz = program_service.zone(program_service.get(s))
        return as_of.astimezone(tz).date(), bool(rules_service.active_rules(s, (KIND,)))

    local_day, any_rules = db.read(today)
    paid = points = 0
    if not any_rules:
        return {"members": 0, "points": 0}
    after: uuid.UUID | None = None
    while True:
        ids = db.read(lambda s, after=after: _find(s, local_day, after))  # type: ignore[misc]
        if not ids:
            break
        n, p = db.write(lambda s, ids=ids: _pay(s, as_of, local_day, ids))  # type: ignore[misc]
        paid += n
        points += p
        after = ids[-1]
        if progress:
            progress(len(ids))
    return {"members": paid, "points": points}
