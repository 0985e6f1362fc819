"""Fixed bonuses outside purchases: welcome, event, birthday and referral rules."""

from __future__ import annotations

from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.kit import clock
from patron.ledger import policy
from patron.ledger import service as ledger
from patron.ledger.models import PointAccount
from patron.members.models import Member
from patron.program import service as program_service
from patron.rules import engine
from patron.rules import service as rules
from patron.tiers import service as tiers


def award(
    session: Session,
    member: Member,
    account: PointAccount,
    kind: str,
    when: engine.Occasion,
    actor: Actor,
    *,
    event_type: str | None = None,
    reason: str | None = None,
) -> engine.Result:
    """Credit the matching rules' points as `bonus` entries, one per rule, spendable at once."""
    program = program_service.get(session)
    result = engine.bonus(
        kind,
        rules.active_rules(session, (kind,)),
        tiers.member_context(session, member),
        when,
        program_service.zone(program),
        event_type=event_type,
    )
    for c in result.breakdown:
        ledger.credit(
            session,
            account,
            "bonus",
            c.points,
            ledger.Source(actor=actor, rule_id=c.rule_id, reason=reason or c.rule_name),
            available_at=clock.now(),
            expires_at=policy.expires_at(program, when.at),
        )
    return result
