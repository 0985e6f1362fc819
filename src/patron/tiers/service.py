from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.members.models import Member
from patron.members.schemas import TierProgress
from patron.program import service as program_service
from patron.rules import engine
from patron.tiers.models import Tier


def ladder(session: Session) -> list[Tier]:
    return list(session.scalars(select(Tier).order_by(Tier.position)))


def base_tier(session: Session) -> Tier:
    tier = session.scalars(select(Tier).order_by(Tier.position).limit(1)).first()
    if tier is None:
        raise RuntimeError("no tiers configured; run `patron migrate`")
    return tier


def names(session: Session) -> dict[str, str]:
    return {t.code: t.name for t in ladder(session)}


def metric_values(session: Session, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The qualifying metric of each member over the programme's window.

    Points and visits come from the ledger and transactions, which land with the points engine;
    until then every member stands at zero.
    """
    return dict.fromkeys(member_ids, 0)


def progress(
    session: Session, member_ids: list[uuid.UUID], current: dict[uuid.UUID, str]
) -> dict[uuid.UUID, TierProgress]:
    program = program_service.get(session)
    steps = ladder(session)
    values = metric_values(session, member_ids)
    out: dict[uuid.UUID, TierProgress] = {}
    for member_id in member_ids:
        value = values.get(member_id, 0)
        position = next((t.position for t in steps if t.code == current[member_id]), 0)
        nxt = next((t for t in steps if t.position > position), None)
        out[member_id] = TierProgress(
            metric=program.tier_metric,  # type: ignore[arg-type]
            value=value,
            next_tier=nxt.code if nxt else None,
            needed=max(nxt.threshold - value, 0) if nxt else None,
        )
    return out


def member_context(session: Session, member: Member) -> engine.MemberContext:
    """What the rules engine needs to know about a member: tier, its multiplier, segments."""
    tier = session.get(Tier, member.tier_code)
    return engine.MemberContext(
        tier_code=member.tier_code,
        tier_name=tier.name if tier else member.tier_code,
        tier_multiplier=Decimal(tier.multiplier) if tier else Decimal(1),
        segments=frozenset(),
    )
