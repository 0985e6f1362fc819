"""Every table, imported once so that Base.metadata knows the whole schema (Alembic, tests)."""

from patron.access.models import ApiKey, StaffUser
from patron.audit.models import AuditEntry
from patron.cards.models import Card
from patron.db import Base
from patron.ledger.models import PointAccount
from patron.members.models import ConsentEvent, Member
from patron.program.models import Program
from patron.tiers.models import Tier

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Card",
    "ConsentEvent",
    "Member",
    "PointAccount",
    "Program",
    "StaffUser",
    "Tier",
]
