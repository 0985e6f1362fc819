"""Reads for the back office's member screens: the filtered list and the member's 360 view.

The list is the API's member search (`members.service.search_statement`, so the same `q` finds the
same people) narrowed by status, tier and segment. The 360 view gathers what the agent needs on
one screen, each part through its domain's service where one exists, a few rows each.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.cards.models import Card
from patron.errors import NotFound
from patron.kit.pagination import page
from patron.ledger import service as ledger
from patron.ledger.models import LedgerEntry
from patron.ledger.schemas import PointsOut
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import MemberOut
from patron.rewards import service as rewards
from patron.rewards.schemas import CouponOut
from patron.segments.models import SegmentMember
from patron.tiers.models import TierChange
from patron.transactions.models import Transaction

STATUSES = ("active", "blocked")


def find(
    session: Session,
    *,
    q: str | None,
    status: str | None,
    tier: str | None,
    segment: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[MemberOut], str | None]:
    """One page of members, newest first, as the API presents them."""
    stmt = members.search_statement(session, q=q, phone=None, email=None, card=None)
    if status in STATUSES:
        stmt = stmt.where(Member.status == status)
    if tier:
        stmt = stmt.where(Member.tier_code == tier)
    if segment:
        inside = select(SegmentMember.member_id).where(SegmentMember.segment_code == segment)
        stmt = stmt.where(Member.id.in_(inside))
    rows, next_cursor = page(session, stmt, Member.id, limit=limit, cursor=cursor)
    return members.present_many(session, rows), next_cursor


@dataclass(frozen=True)
class Member360:
    member: MemberOut
    status_reason: str | None
    location: str | None
    points: PointsOut
    cards: list[Card]
    consents: list[ConsentEvent]
    ledger: Sequence[LedgerEntry]
    ledger_next: str | None
    transactions: list[Transaction]
    tier_changes: list[TierChange]
    audit: list[AuditEntry]
    coupons: list[CouponOut]


def member_360(session: Session, member_id: uuid.UUID, *, ledger_cursor: str | None = None) -> Member360:
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    entries, ledger_next = ledger.entries(session, member.id, limit=20, cursor=ledger_cursor)
    purchases = list(
        session.scalars(
            select(Transaction)
            .where(Transaction.member_id == member.id)
            .order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
            .limit(20)
        )
    )
    consents = list(
        session.scalars(
            select(ConsentEvent).where(ConsentEvent.member_id == member.id).order_by(ConsentEvent.recorded_at.desc())
        )
    )
    changes = list(
        session.scalars(
            select(TierChange).where(TierChange.member_id == member.id).order_by(TierChange.changed_at.desc()).limit(20)
        )
    )
    trail = list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "member", AuditEntry.entity_id == str(member.id))
            .order_by(AuditEntry.id.desc())
            .limit(30)
        )
    )
    return Member360(
        member=members.present(session, member),
        status_reason=member.block_reason,
        location=member.location,
        points=ledger.summary(session, member.id),
        cards=cards.member_cards(session, member.id),
        consents=consents,
        ledger=entries,
        ledger_next=ledger_next,
        transactions=purchases,
        tier_changes=changes,
        audit=trail,
        coupons=_coupons(session, member.id),
    )


def _coupons(session: Session, member_id: uuid.UUID) -> list[CouponOut]:
    items, _ = rewards.member_coupons(session, member_id, status=None, limit=20, cursor=None)
    return items
