from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.errors import ValidationFailed
from patron.kit import cache, clock
from patron.kit.money import from_minor, minor_digits
from patron.members.models import Member
from patron.members.schemas import TierProgress
from patron.program import service as program_service
from patron.program.models import Program
from patron.rules import engine
from patron.segments import service as segments
from patron.tiers.models import Tier, TierChange
from patron.tiers.schemas import LadderIn, LadderOut, TierOut


@dataclass(frozen=True)
class TierInfo:
    code: str
    name: str
    position: int
    threshold: int
    multiplier: Decimal
    benefits: tuple[str, ...]


def ladder(session: Session) -> list[TierInfo]:
    """The tiers in ascending order, from the per-process cache while they are unchanged."""

    def load() -> list[TierInfo]:
        return [
            TierInfo(t.code, t.name, t.position, t.threshold, Decimal(t.multiplier), tuple(t.benefits or ()))
            for t in session.scalars(select(Tier).order_by(Tier.position))
        ]

    return cache.versioned(session, "tiers", program_service.get(session).config_version, load)


def base_tier(session: Session) -> TierInfo:
    steps = ladder(session)
    if not steps:
        raise RuntimeError("no tiers configured; run `patron migrate`")
    return steps[0]


def names(session: Session) -> dict[str, str]:
    return {t.code: t.name for t in ladder(session)}


def _since(session: Session, program_window: int | None) -> datetime | None:
    return clock.now() - timedelta(days=program_window) if program_window else None


def metric_values(session: Session, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each member's qualifying metric over the window that ends now, in one query:
    points earned net of reversals, net spend in minor units, or the number of purchases."""
    from patron.ledger.models import LedgerEntry
    from patron.transactions.models import Transaction

    if not member_ids:
        return {}
    program = program_service.get(session)
    since = _since(session, program.tier_window_days)
    if program.tier_metric == "points":
        stmt = select(LedgerEntry.member_id, func.sum(LedgerEntry.points)).where(
            LedgerEntry.member_id.in_(member_ids), LedgerEntry.kind.in_(("earn", "reverse"))
        )
        if since is not None:
            stmt = stmt.where(LedgerEntry.created_at >= since)
        stmt = stmt.group_by(LedgerEntry.member_id)
    else:
        measure = (
            func.count()
            if program.tier_metric == "visits"
            else func.sum(Transaction.amount_due_minor - Transaction.returned_net_minor)
        )
        stmt = select(Transaction.member_id, measure).where(Transaction.member_id.in_(member_ids))
        if since is not None:
            stmt = stmt.where(Transaction.occurred_at >= since)
        stmt = stmt.group_by(Transaction.member_id)
    values = dict.fromkeys(member_ids, 0)
    values.update({m: max(int(v or 0), 0) for m, v in session.execute(stmt)})
    return values


def _threshold_units(program: Program, threshold: int) -> int:
    """Spend thresholds are whole currency units; the metric is in minor units."""
    return threshold * 10 ** minor_digits(program.currency) if program.tier_metric == "spend" else threshold


def tier_for(program: Program, steps: list[TierInfo], value: int) -> TierInfo:
    """The highest tier whose threshold the metric reaches."""
    reached = [t for t in steps if _threshold_units(program, t.threshold) <= value]
    return reached[-1] if reached else steps[0]


def progress(
    session: Session, member_ids: list[uuid.UUID], current: dict[uuid.UUID, str]
) -> dict[uuid.UUID, TierProgress]:
    program = program_service.get(session)
    steps = ladder(session)
    values = metric_values(session, member_ids)
    spend = program.tier_metric == "spend"
    out: dict[uuid.UUID, TierProgress] = {}
    for member_id in member_ids:
        value = values.get(member_id, 0)
        position = next((t.position for t in steps if t.code == current[member_id]), -1)
        nxt = next((t for t in steps if t.position > position), None)
        needed = max(_threshold_units(program, nxt.threshold) - value, 0) if nxt else None
        out[member_id] = TierProgress(
            metric=program.tier_metric,
            value=str(from_minor(value, program.currency)) if spend else value,
            next_tier=nxt.code if nxt else None,
            needed=(str(from_minor(needed, program.currency)) if spend else needed) if needed is not None else None,
        )
    return out


def record_change(session: Session, member: Member, to: TierInfo, reason: str, value: int) -> None:
    session.add(
        TierChange(
            member_id=member.id,
            from_code=member.tier_code,
            to_code=to.code,
            reason=reason,
            metric_value=value,
            changed_at=clock.now(),
        )
    )
    member.tier_code = to.code


def after_purchase(session: Session, member: Member, amount_due: int, occurred_at: datetime) -> None:
    """Immediate upgrade when a purchase takes the member over a threshold (never a downgrade).

    The purchase's own row is written after this check (its answer carries the tier), so its
    spend and visit are added here; its points are already in the ledger."""
    steps = ladder(session)
    if len(steps) < 2:
        return
    program = program_service.get(session)
    value = metric_values(session, [member.id])[member.id]
    since = _since(session, program.tier_window_days)
    if since is None or occurred_at >= since:
        value += amount_due if program.tier_metric == "spend" else 1 if program.tier_metric == "visits" else 0
    target = tier_for(program, steps, value)
    position = next((t.position for t in steps if t.code == member.tier_code), -1)
    if target.position > position:
        record_change(session, member, target, "purchase", value)


def ladder_out(session: Session) -> LadderOut:
    program = program_service.get(session)
    return LadderOut(
        metric=program.tier_metric,
        window_days=program.tier_window_days,
        grace_days=program.tier_grace_days,
        tiers=[
            TierOut(code=t.code, name=t.name, threshold=t.threshold, multiplier=t.multiplier, benefits=list(t.benefits))
            for t in ladder(session)
        ],
    )


def put_ladder(session: Session, actor: Actor, data: LadderIn) -> LadderOut:
    """Replace the tier ladder. Members on a tier that no longer exists move to the first tier;
    then everyone whose metric reaches a higher tier goes up at once. Nobody goes down until
    requalification runs."""
    codes = [t.code for t in data.tiers]
    if len(set(codes)) != len(codes):
        raise ValidationFailed("tier codes must be unique", field="tiers")
    if data.tiers[0].threshold != 0:
        raise ValidationFailed("the first tier's threshold must be 0", field="tiers.0.threshold")
    for i, (a, b) in enumerate(itertools.pairwise(data.tiers), start=1):
        if b.threshold <= a.threshold:
            raise ValidationFailed("thresholds must ascend", field=f"tiers.{i}.threshold")
    for i, t in enumerate(data.tiers):
        if t.multiplier <= 0:
            raise ValidationFailed("multiplier must be above zero", field=f"tiers.{i}.multiplier")
    program = program_service.get(session, for_update=True)
    program.tier_metric = data.metric
    program.tier_window_days = data.window_days
    program.tier_grace_days = data.grace_days
    session.execute(delete(Tier))
    session.add_all(
        Tier(
            code=t.code,
            name=t.name,
            position=i,
            threshold=t.threshold,
            multiplier=str(t.multiplier),
            benefits=list(t.benefits),
        )
        for i, t in enumerate(data.tiers)
    )
    session.flush()
    session.execute(
        update(Member).where(Member.tier_code.not_in(codes)).values(tier_code=codes[0]),
        execution_options={"synchronize_session": False},
    )
    program_service.bump_config(session)
    # The job module builds on this one; imported here, where the two meet, to keep imports acyclic.
    from patron.jobs.requalify import place_after_ladder_change

    upgraded = place_after_ladder_change(session, clock.now())
    audit.record(
        session,
        actor,
        "tiers.update",
        "program",
        "tiers",
        {"codes": codes, "metric": data.metric, "upgraded": upgraded},
    )
    return ladder_out(session)


def member_context(session: Session, member: Member) -> engine.MemberContext:
    """What the rules engine needs to know about a member: tier, its multiplier, segments.

    The segments (as the last refresh computed them) cost a query, made only while some active
    earning rule is restricted to segments."""
    tier = next((t for t in ladder(session) if t.code == member.tier_code), None)
    wanted = segments.rule_segments(session)
    return engine.MemberContext(
        tier_code=member.tier_code,
        tier_name=tier.name if tier else member.tier_code,
        tier_multiplier=tier.multiplier if tier else Decimal(1),
        segments=segments.member_segments(session, member.id) if wanted else frozenset(),
    )
