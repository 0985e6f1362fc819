"""Roles and what each may do, as API.md's "Common rules" give them."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    AGENT = "agent"
    CASHIER = "cashier"
    ANALYST = "analyst"


class Perm(StrEnum):
    READ_ALL = "read_all"  # every read: configuration, members, analytics, audit
    MEMBERS_READ = "members_read"  # members, points, ledger, cards, transactions, coupons, catalogue
    IDENTIFY = "identify"
    ENROL = "enrol"
    CARDS = "cards"
    TRANSACT = "transact"  # purchases, returns, events, reward claims
    MEMBERS_EDIT = "members_edit"
    MEMBERS_BLOCK = "members_block"
    POINTS_ADJUST = "points_adjust"
    POINTS_REDEEM = "points_redeem"
    CONFIGURE = "configure"  # program, rules, tiers, rewards, segments
    ADMINISTER = "administer"  # jobs, API keys, staff users


_CASHIER = {Perm.MEMBERS_READ, Perm.IDENTIFY, Perm.ENROL, Perm.CARDS, Perm.TRANSACT}
_AGENT = _CASHIER | {Perm.MEMBERS_EDIT, Perm.MEMBERS_BLOCK, Perm.POINTS_ADJUST, Perm.POINTS_REDEEM}
_READER = {Perm.READ_ALL, Perm.MEMBERS_READ, Perm.IDENTIFY}

PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.ADMIN: frozenset(Perm),
    Role.MARKETER: frozenset(_READER | {Perm.CONFIGURE}),
    Role.AGENT: frozenset(_AGENT),
    Role.CASHIER: frozenset(_CASHIER),
    Role.ANALYST: frozenset(_READER),
}


def allows(role: Role, perm: Perm) -> bool:
    return perm in PERMISSIONS[role]
