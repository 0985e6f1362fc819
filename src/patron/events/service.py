"""Custom events (survey answered, profile completed, a visit without purchase...) that event rules reward."""

from __future__ import annotations

from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.events.schemas import EventIn, EventOut
from patron.kit import clock
from patron.ledger import service as ledger
from patron.members import service as members
from patron.rules import bonuses, engine
from patron.transactions.schemas import BreakdownOut
from patron.transactions.service import balance_of


def record(session: Session, actor: Actor, data: EventIn) -> EventOut:
    member = members.get(session, data.member_id)
    members.require_active(member)
    account = ledger.lock_account(session, member.id)
    ledger.release_matured(session, account, clock.now())
    when = engine.Occasion(at=data.occurred_at or clock.now(), location=actor.location)
    result = bonuses.award(session, member, account, "event", when, actor, event_type=data.type)
    return EventOut(
        points_earned=result.points,
        breakdown=[BreakdownOut(rule_id=c.rule_id, rule_name=c.rule_name, points=c.points) for c in result.breakdown],
        balance=balance_of(account),
    )
