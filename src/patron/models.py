"""Every table, imported once so that Base.metadata knows the whole schema (Alembic, tests)."""

from patron.access.models import ApiKey, StaffUser
from patron.analytics.models import EnrolmentDay, LedgerDay, PurchaseDay, RollupCheck
from patron.audit.models import AuditEntry
from patron.cards.models import Card
from patron.db import Base
from patron.idempotency.models import IdempotencyRecord
from patron.jobs.models import BirthdayAward, JobRun
from patron.ledger.models import LedgerEntry, LotAllocation, PointAccount, PointLot
from patron.mail.models import MailAttempt, MailMessage
from patron.members.models import ConsentEvent, Member
from patron.portal.models import DeletionRequest, PortalSession, SignInCode
from patron.program.models import Program
from patron.rewards.models import Coupon, Reward
from patron.rules.models import EarningRule
from patron.segments.models import Segment, SegmentMember, SegmentSize
from patron.tiers.models import Tier, TierChange
from patron.transactions.models import Transaction, TransactionLine, TransactionReturn

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "BirthdayAward",
    "Card",
    "ConsentEvent",
    "Coupon",
    "DeletionRequest",
    "EarningRule",
    "EnrolmentDay",
    "IdempotencyRecord",
    "JobRun",
    "LedgerDay",
    "LedgerEntry",
    "LotAllocation",
    "MailAttempt",
    "MailMessage",
    "Member",
    "PointAccount",
    "PointLot",
    "PortalSession",
    "Program",
    "PurchaseDay",
    "Reward",
    "RollupCheck",
    "Segment",
    "SegmentMember",
    "SegmentSize",
    "SignInCode",
    "StaffUser",
    "Tier",
    "TierChange",
    "Transaction",
    "TransactionLine",
    "TransactionReturn",
]
