"""Rewards and coupons: the catalogue, claims paid with points, and coupons used at the till.

A claim spends the reward's points through the ledger (a `redeem` entry, soonest-expiring points
first), takes one from the stock and issues a coupon, all in the request's one transaction. A
cancellation undoes the three together: the points go back as a `restore` entry to the lots they
came from (keeping their expiry), the stock gets its unit back, and the coupon reads `cancelled`.

Lock order (the policy is in patron/db.py). Every path takes its locks in this global order:

1. the member's point account (`ledger.lock_account`);
2. the reward row, FOR UPDATE;
3. coupon rows, FOR UPDATE, in code order.

A claim takes 1 then 2: claims of one member queue on the account, so the per-member limit is
counted under it, and claims of one reward by many members queue on the reward row, so the stock
cannot be oversold. A purchase takes 1 then 3 (see transactions/service.py); a cancellation takes
1, 2, 3. On SQLite, `Database.write` starts with BEGIN IMMEDIATE, which serialises all of them.

Coupon codes are 12 characters of the dictation alphabet (27 symbols, about 57 bits), shown as
XXXX-XXXX-XXXX and stored without dashes. Input is accepted in any case and with or without
dashes or spaces; everything is normalised before a lookup.

Using coupons in a purchase (API.md "Transactions", step 1), decisions:

* The checks, per code: unknown 404 `not_found`; another member's 409 `coupon_not_owned`; used
  409 `coupon_used`; cancelled 409 `coupon_not_applicable` (its points were given back, so it is
  void rather than used); past `expires_at` 409 `coupon_expired`; a `free_item` whose SKU is not
  in the basket (or whose units were all freed by an earlier coupon) 409 `coupon_not_applicable`.
  The same code twice in one request is malformed: 422.
* Expiry is judged by the server's clock, not the purchase's `occurred_at`, so a back-dated
  purchase cannot revive an expired coupon.
* The discounts add up in the order the codes were given; one that would take the total below
  zero is cut to what is left.
* A return leaves a used coupon used: the discount was spread over the lines, the lines' net
  amounts already include it, and a return's share is taken from those net amounts, so the
  returned goods give back only what the customer paid for them.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.errors import (
    Conflict,
    CouponExpired,
    CouponNotApplicable,
    CouponNotOwned,
    CouponUsed,
    InsufficientPoints,
    LimitReached,
    MemberBlocked,
    NotEligible,
    NotFound,
    OutOfStock,
    ValidationFailed,
)
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET, dictation_code
from patron.kit.money import from_minor, round_money, to_minor
from patron.kit.pagination import page
from patron.ledger import service as ledger
from patron.members import service as members
from patron.members.models import Member
from patron.program import service as program_service
from patron.rewards.models import Coupon, Reward
from patron.rewards.schemas import (
    ClaimIn,
    CouponOut,
    MemberRewardList,
    MemberRewardOut,
    RewardIn,
    RewardOut,
    RewardPatch,
)
from patron.segments import service as segments
from patron.segments.models import Segment
from patron.tiers.models import Tier

VALUE_KINDS = ("percent_discount", "amount_discount")
MAX_PERCENT_PLACES = 4
MAX_MINOR = 10**15

# --- Coupon codes ---------------------------------------------------------------------------------

CODE_LENGTH = 12  # 27 ** 12 is about 2 ** 57
_SEPARATORS = re.compile(r"[\s\-_.]")
_ALPHABET = frozenset(DICTATION_ALPHABET)


def squeeze_code(text: str) -> str:
    """The code as typed, without separators and in upper case (full-width input folded)."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def normalise_code(text: str) -> str | None:
    """'abcd efgh-jkmn' → 'ABCDEFGHJKMN'; None when it cannot be one of our codes."""
    code = squeeze_code(text)
    if len(code) != CODE_LENGTH or not set(code) <= _ALPHABET:
        return None
    return code


def display_code(code: str) -> str:
    """Grouped by four for reading out: 'ABCD-EFGH-JKMN'."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def _new_code(session: Session) -> str:
    for _ in range(20):
        code = dictation_code(CODE_LENGTH)
        if session.scalar(select(func.count()).where(Coupon.code == code)) == 0:
            return code
    raise RuntimeError("could not find a free coupon code")  # pragma: no cover - 57 bits of chance


# --- The catalogue ----------------------------------------------------------------------------------


def _money(value: Decimal, currency: str, field: str) -> int:
    if value <= 0:
        raise ValidationFailed(f"{field} must be above zero", field=field)
    try:
        minor = to_minor(value, currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field=field) from exc
    if minor >= MAX_MINOR:
        raise ValidationFailed(f"{field} is too large", field=field)
    return minor


def _percent(value: Decimal) -> str:
    if not 0 < value <= 100:
        raise ValidationFailed("a percent discount is above 0 and at most 100", field="value")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PERCENT_PLACES:
        raise ValidationFailed(f"a percent has at most {MAX_PERCENT_PLACES} decimal places", field="value")
    return format(value, "f")  # exact, and never in exponent form


def _known(session: Session, codes: list[str], column: Any, field: str, what: str) -> list[str]:
    wanted = list(dict.fromkeys(codes))
    if not wanted:
        return []
    found = set(session.scalars(select(column).where(column.in_(wanted))))
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ValidationFailed(f"no such {what}: {', '.join(missing)}", field=field)
    return wanted


def _apply(session: Session, reward: Reward, data: RewardIn | RewardPatch, fields: set[str]) -> None:
    currency = program_service.get(session).currency
    required = {"name", "cost_points", "valid_days", "active"}
    for name in sorted(fields & required):
        if getattr(data, name) is None:
            raise ValidationFailed(f"{name} cannot be null", field=name)
    if "name" in fields:
        reward.name = cast(str, data.name)
    if "description" in fields:
        reward.description = data.description or None
    if "cost_points" in fields:
        reward.cost_points = cast(int, data.cost_points)
    if "valid_days" in fields:
        reward.valid_days = cast(int, data.valid_days)
    if "active" in fields:
        reward.active = cast(bool, data.active)
    if "stock" in fields:
        reward.stock = data.stock
    if "limit_per_member" in fields:
        reward.limit_per_member = data.limit_per_member
    if "tiers" in fields:
        reward.tiers = _known(session, data.tiers or [], Tier.code, "tiers", "tier")
    if "segments" in fields:
        reward.segments = _known(session, data.segments or [], Segment.code, "segments", "segment")
    if "sku" in fields:
        reward.sku = data.sku
    if "value" in fields:
        if data.value is None:
            reward.percent = reward.amount_minor = None
        elif reward.kind == "percent_discount":
            reward.percent = _percent(data.value)
        elif reward.kind == "amount_discount":
            reward.amount_minor = _money(data.value, currency, "value")
        else:
            raise ValidationFailed(f"value does not apply to a {reward.kind} reward", field="value")
    if "max_discount" in fields:
        if data.max_discount is None:
            reward.max_discount_minor = None
        elif reward.kind != "percent_discount":
            raise ValidationFailed("max_discount applies to percent_discount rewards only", field="max_discount")
        else:
            reward.max_discount_minor = _money(data.max_discount, currency, "max_discount")


def _check(reward: Reward) -> None:
    """What each kind needs, checked on the reward as it will be stored."""
    if reward.kind == "percent_discount" and reward.percent is None:
        raise ValidationFailed("a percent_discount reward needs value (the percent)", field="value")
    if reward.kind == "amount_discount" and reward.amount_minor is None:
        raise ValidationFailed("an amount_discount reward needs value (the amount)", field="value")
    if reward.kind == "free_item" and not reward.sku:
        raise ValidationFailed("a free_item reward needs sku", field="sku")
    if reward.kind != "free_item" and reward.sku:
        raise ValidationFailed(f"sku does not apply to a {reward.kind} reward", field="sku")


def create(session: Session, actor: Actor, data: RewardIn) -> Reward:
    now = clock.now()
    reward = Reward(
        kind=data.kind,
        tiers=[],
        segments=[],
        claimed=0,
        created_at=now,
        updated_at=now,
    )
    fields = set(data.model_fields_set) | {"name", "cost_points", "valid_days", "active"}
    _apply(session, reward, data, fields)
    _check(reward)
    session.add(reward)
    session.flush()
    audit.record(session, actor, "reward.create", "reward", reward.id, {"kind": reward.kind, "name": reward.name})
    return reward


def get(session: Session, reward_id: uuid.UUID, *, for_update: bool = False) -> Reward:
    reward = session.get(Reward, reward_id, with_for_update=for_update, populate_existing=for_update)
    if reward is None:
        raise NotFound("No such reward")
    return reward


def update(session: Session, actor: Actor, reward_id: uuid.UUID, patch: RewardPatch) -> Reward:
    reward = get(session, reward_id, for_update=True)
    fields = set(patch.model_fields_set)
    if "kind" in fields and patch.kind != reward.kind:
        raise ValidationFailed("kind cannot change: create a new reward instead", field="kind")
    _apply(session, reward, patch, fields - {"kind"})
    _check(reward)
    reward.updated_at = clock.now()
    audit.record(session, actor, "reward.update", "reward", reward.id, {"fields": sorted(fields)})
    return reward


def listing(
    session: Session, *, active: bool | None, kind: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Reward], str | None]:
    """The catalogue in creation order."""
    stmt = select(Reward)
    if active is not None:
        stmt = stmt.where(Reward.active.is_(active))
    if kind:
        stmt = stmt.where(Reward.kind == kind)
    return page(session, stmt, Reward.id, limit=limit, cursor=cursor, newest_first=False)


def _value_out(kind: str, percent: str | None, amount_minor: int | None, currency: str) -> Decimal | None:
    if kind == "percent_discount" and percent is not None:
        return Decimal(percent)
    if kind == "amount_discount" and amount_minor is not None:
        return from_minor(amount_minor, currency)
    return None


def _money_out(minor: int | None, currency: str) -> Decimal | None:
    return from_minor(minor, currency) if minor is not None else None


def _reward_fields(reward: Reward, currency: str) -> dict[str, Any]:
    return {
        "id": reward.id,
        "name": reward.name,
        "description": reward.description,
        "kind": reward.kind,
        "value": _value_out(reward.kind, reward.percent, reward.amount_minor, currency),
        "sku": reward.sku,
        "max_discount": _money_out(reward.max_discount_minor, currency),
        "cost_points": reward.cost_points,
        "stock": reward.stock,
        "limit_per_member": reward.limit_per_member,
        "tiers": list(reward.tiers or []),
        "segments": list(reward.segments or []),
        "valid_days": reward.valid_days,
        "active": reward.active,
        "claimed": reward.claimed,
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
    }


def to_out(session: Session, reward: Reward) -> RewardOut:
    return RewardOut(**_reward_fields(reward, program_service.get(session).currency))


# --- Who may claim ----------------------------------------------------------------------------------

REFUSALS: dict[str, type[Conflict]] = {
    "member_blocked": MemberBlocked,
    "not_eligible": NotEligible,
    "out_of_stock": OutOfStock,
    "limit_reached": LimitReached,
    "insufficient_points": InsufficientPoints,
}


def _refusal(
    member: Member, reward: Reward, member_segments: frozenset[str], taken: int, available: int
) -> tuple[str, str] | None:
    """The code and the reason a claim would be refused now, checked in this order; None if it
    would succeed."""
    if member.status == "blocked":
        return "member_blocked", "The member is blocked and cannot claim rewards"
    if not reward.active:
        return "not_eligible", "This reward is not offered at the moment"
    if reward.tiers and member.tier_code not in reward.tiers:
        return "not_eligible", f"This reward is for the tiers {', '.join(reward.tiers)}"
    if reward.segments and not member_segments & set(reward.segments):
        return "not_eligible", f"This reward is for members of the segments {', '.join(reward.segments)}"
    if reward.stock is not None and reward.stock <= 0:
        return "out_of_stock", "This reward is out of stock"
    if reward.limit_per_member is not None and taken >= reward.limit_per_member:
        return "limit_reached", f"A member may claim this reward {reward.limit_per_member} time(s)"
    if available < reward.cost_points:
        return "insufficient_points", f"{reward.cost_points} points needed, {max(available, 0)} available"
    return None


def _taken(session: Session, reward_id: uuid.UUID, member_id: uuid.UUID) -> int:
    """The member's coupons of this reward; cancelled ones do not count against the limit."""
    return int(
        session.scalar(
            select(func.count()).where(
                Coupon.reward_id == reward_id, Coupon.member_id == member_id, Coupon.status != "cancelled"
            )
        )
        or 0
    )


def claim(session: Session, actor: Actor, member_id: uuid.UUID, reward_id: uuid.UUID, data: ClaimIn) -> CouponOut:
    """Spend the points, take one from the stock, issue the coupon; or refuse and change nothing."""
    member = members.get(session, member_id)
    members.require_active(member)
    get(session, reward_id)  # a 404 before any lock is taken
    account = ledger.lock_account(session, member.id)
    reward = get(session, reward_id, for_update=True)
    now = clock.now()
    ledger.release_matured(session, account, now)
    wanted = segments.member_segments(session, member.id) if reward.segments else frozenset()
    refused = _refusal(member, reward, wanted, _taken(session, reward.id, member.id), account.available)
    if refused is not None:
        code, detail = refused
        raise REFUSALS[code](detail)

    coupon_code = _new_code(session)
    entry = None
    if reward.cost_points > 0:
        reason = f"reward: {reward.name} (coupon {display_code(coupon_code)})"
        entry = ledger.debit(session, account, "redeem", reward.cost_points, ledger.Source(actor=actor, reason=reason))
    if reward.stock is not None:
        reward.stock -= 1
    reward.claimed += 1
    coupon = Coupon(
        code=coupon_code,
        reward_id=reward.id,
        member_id=member.id,
        status="issued",
        kind=reward.kind,
        percent=reward.percent,
        amount_minor=reward.amount_minor,
        max_discount_minor=reward.max_discount_minor,
        sku=reward.sku,
        points_spent=reward.cost_points,
        redeem_entry_id=entry.id if entry is not None else None,
        claim_external_id=data.external_id,
        claimed_at=now,
        expires_at=now + timedelta(days=reward.valid_days),
    )
    session.add(coupon)
    audit.record(
        session,
        actor,
        "coupon.claim",
        "member",
        member.id,
        {"reward_id": str(reward.id), "coupon": display_code(coupon_code), "points": reward.cost_points},
    )
    return coupon_out(session, coupon, now)


# --- Coupons ------------------------------------------------------------------------------------------


def status_of(coupon: Coupon, now: datetime) -> str:
    """issued, used or cancelled as stored; an issued coupon past its expiry reads as expired."""
    if coupon.status == "issued" and coupon.expires_at <= now:
        return "expired"
    return coupon.status


def coupon_out(session: Session, coupon: Coupon, now: datetime | None = None) -> CouponOut:
    return coupons_out(session, [coupon], now)[0]


def coupons_out(session: Session, coupons: Sequence[Coupon], now: datetime | None = None) -> list[CouponOut]:
    """The coupons as the API shows them, their rewards read in one query: a session keeps loaded
    rows only while something refers to them, so reading each coupon's reward and the programme
    apart read them again for every coupon of a list."""
    currency = program_service.get(session).currency
    now = now or clock.now()
    wanted = {c.reward_id for c in coupons}
    rows = session.execute(select(Reward.id, Reward.name).where(Reward.id.in_(wanted)))
    names: dict[uuid.UUID, str] = {reward_id: name for reward_id, name in rows}
    return [
        CouponOut(
            code=display_code(coupon.code),
            reward_id=coupon.reward_id,
            member_id=coupon.member_id,
            status=cast(Any, status_of(coupon, now)),
            expires_at=coupon.expires_at,
            used_at=coupon.used_at,
            transaction_id=coupon.transaction_id,
            reward_name=names[coupon.reward_id],
            kind=cast(Any, coupon.kind),
            value=_value_out(coupon.kind, coupon.percent, coupon.amount_minor, currency),
            sku=coupon.sku,
            max_discount=_money_out(coupon.max_discount_minor, currency),
            discount=_money_out(coupon.discount_minor, currency),
            points_spent=coupon.points_spent,
            claimed_at=coupon.claimed_at,
            cancelled_at=coupon.cancelled_at,
        )
        for coupon in coupons
    ]


def find(session: Session, text: str) -> Coupon:
    code = normalise_code(text)
    coupon = session.scalar(select(Coupon).where(Coupon.code == code)) if code else None
    if coupon is None:
        raise NotFound("No such coupon")
    return coupon


def _with_status(stmt: Select[Coupon], status: str | None, now: datetime) -> Select[Coupon]:
    if status == "issued":
        return stmt.where(Coupon.status == "issued", Coupon.expires_at > now)
    if status == "expired":
        return stmt.where(Coupon.status == "issued", Coupon.expires_at <= now)
    if status:
        return stmt.where(Coupon.status == status)
    return stmt


def member_coupons(
    session: Session, member_id: uuid.UUID, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[CouponOut], str | None]:
    """The member's coupons, the newest claim first."""
    members.get(session, member_id)
    now = clock.now()
    stmt = _with_status(select(Coupon).where(Coupon.member_id == member_id), status, now)
    rows, next_cursor = page(session, stmt, Coupon.id, limit=limit, cursor=cursor)
    return coupons_out(session, rows, now), next_cursor


def member_catalogue(session: Session, member_id: uuid.UUID, *, limit: int, cursor: str | None) -> MemberRewardList:
    """The active rewards as this member sees them: whether a claim would succeed, and why not."""
    member = members.get(session, member_id)
    if member.status == "erased":
        raise NotFound("No such member")
    offered = select(Reward).where(Reward.active.is_(True))
    rows, next_cursor = page(session, offered, Reward.id, limit=limit, cursor=cursor, newest_first=False)
    currency = program_service.get(session).currency
    available = ledger.get_account(session, member.id).available
    taken: dict[uuid.UUID, int] = {}
    if rows:
        counted = session.execute(
            select(Coupon.reward_id, func.count())
            .where(
                Coupon.member_id == member.id,
                Coupon.reward_id.in_([r.id for r in rows]),
                Coupon.status != "cancelled",
            )
            .group_by(Coupon.reward_id)
        )
        taken = {reward_id: int(n) for reward_id, n in counted}
    wanted = segments.member_segments(session, member.id) if any(r.segments for r in rows) else frozenset()
    items = []
    for reward in rows:
        refused = _refusal(member, reward, wanted, taken.get(reward.id, 0), available)
        reason = refused[0] if refused else None
        items.append(
            MemberRewardOut(
                **_reward_fields(reward, currency),
                eligible=reason in (None, "insufficient_points"),
                affordable=available >= reward.cost_points,
                reason=cast(Any, reason),
                claimed_by_member=taken.get(reward.id, 0),
            )
        )
    return MemberRewardList(items=items, next_cursor=next_cursor)


def _lock_coupons(session: Session, codes: Sequence[str]) -> dict[str, Coupon]:
    """Coupon rows FOR UPDATE, in code order (the last step of the lock order above)."""
    if not codes:
        return {}
    rows = session.scalars(
        select(Coupon)
        .where(Coupon.code.in_(sorted(set(codes))))
        .order_by(Coupon.code)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {c.code: c for c in rows}


def cancel(session: Session, actor: Actor, text: str, reason: str | None) -> tuple[CouponOut, bool]:
    """Void an issued coupon and give its points and its unit of stock back.

    Returns the coupon and whether it had been cancelled already: a repeat changes nothing, so a
    retried cancellation never gives the points back twice."""
    found = find(session, text)  # read without a lock: the account comes first in the lock order
    code, member_id, reward_id = found.code, found.member_id, found.reward_id
    account = ledger.lock_account(session, member_id)
    reward = get(session, reward_id, for_update=True)
    coupon = _lock_coupons(session, [code])[code]
    now = clock.now()
    if coupon.status == "cancelled":
        return coupon_out(session, coupon, now), True
    if coupon.status == "used":
        raise CouponUsed("The coupon has been used and cannot be cancelled")
    if coupon.expires_at <= now:
        raise CouponExpired("The coupon has expired and cannot be cancelled")
    coupon.status = "cancelled"
    coupon.cancelled_at = now
    if coupon.points_spent > 0 and coupon.redeem_entry_id is not None:
        why = f"coupon {display_code(coupon.code)} cancelled" + (f": {reason}" if reason else "")
        ledger.restore(
            session, account, [coupon.redeem_entry_id], coupon.points_spent, ledger.Source(actor=actor, reason=why)
        )
    if reward.stock is not None:
        reward.stock += 1
    reward.claimed -= 1
    audit.record(
        session,
        actor,
        "coupon.cancel",
        "member",
        member_id,
        {"coupon": display_code(coupon.code), "points": coupon.points_spent, "reason": reason},
    )
    return coupon_out(session, coupon, now), False


# --- Coupons at the till --------------------------------------------------------------------------


class BasketLine(Protocol):
    """What the coupon step reads of a priced purchase line (money in minor units)."""

    @property
    def sku(self) -> str: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def unit_price(self) -> int: ...

    @property
    def total(self) -> int: ...


@dataclass
class Applied:
    """The coupons of one purchase, locked and checked, with what each takes off."""

    discount: int = 0
    coupons: list[tuple[Coupon, int]] = field(default_factory=list)

    @property
    def uses(self) -> list[tuple[str, int]]:
        """(code as shown, discount) in the order given, for the purchase's answer."""
        return [(display_code(c.code), d) for c, d in self.coupons]


def percent_discount(total: int, percent: Decimal, currency: str) -> int:
    """total × percent / 100, rounded half up to the minor unit."""
    return to_minor(round_money(from_minor(total, currency) * percent / 100, currency), currency)


def _free_item(coupon: Coupon, lines: Sequence[BasketLine], freed: list[Decimal], currency: str) -> int:
    """One unit of the coupon's SKU (or what is left of the line, for a fractional quantity)."""
    for i, line in enumerate(lines):
        if line.sku == coupon.sku and freed[i] < line.quantity:
            take = min(Decimal(1), line.quantity - freed[i])
            freed[i] += take
            price = to_minor(round_money(from_minor(line.unit_price, currency) * take, currency), currency)
            return min(price, line.total)
    raise CouponNotApplicable(
        f"Coupon {display_code(coupon.code)} gives {coupon.sku} free, and the basket has no {coupon.sku} left to free"
    )


def apply_coupons(
    session: Session,
    member_id: uuid.UUID,
    texts: Sequence[str],
    total: int,
    lines: Sequence[BasketLine],
    now: datetime,
) -> Applied:
    """Step 1 of a purchase's arithmetic: check each coupon and work out its discount.

    The caller holds the member's account lock; the coupons are locked here, in code order."""
    squeezed = [squeeze_code(t) for t in texts]
    for i, typed in enumerate(squeezed):
        if typed in squeezed[:i]:
            raise ValidationFailed("the same coupon is given twice", field=f"coupons.{i}")
    codes = [normalise_code(t) for t in texts]
    locked = _lock_coupons(session, [c for c in codes if c])
    currency = program_service.get(session).currency
    freed = [Decimal(0)] * len(lines)
    applied = Applied()
    for code in codes:
        coupon = locked.get(code) if code else None
        if coupon is None:
            raise NotFound(f"No such coupon: {display_code(code)}" if code else "No such coupon")
        shown = display_code(coupon.code)
        if coupon.member_id != member_id:
            raise CouponNotOwned(f"Coupon {shown} belongs to another member")
        if coupon.status == "used":
            raise CouponUsed(f"Coupon {shown} has already been used")
        if coupon.status == "cancelled":
            raise CouponNotApplicable(f"Coupon {shown} was cancelled and its points given back")
        if coupon.expires_at <= now:
            raise CouponExpired(f"Coupon {shown} expired at {coupon.expires_at.isoformat()}")
        if coupon.kind == "percent_discount":
            amount = percent_discount(total, Decimal(coupon.percent or 0), currency)
            if coupon.max_discount_minor is not None:
                amount = min(amount, coupon.max_discount_minor)
        elif coupon.kind == "amount_discount":
            amount = min(coupon.amount_minor or 0, total)
        elif coupon.kind == "free_item":
            amount = _free_item(coupon, lines, freed, currency)
        else:  # gift, privilege: handed over at the till, nothing off the price
            amount = 0
        amount = min(amount, total - applied.discount)
        applied.discount += amount
        applied.coupons.append((coupon, amount))
    return applied


def mark_used(applied: Applied, transaction_id: uuid.UUID, now: datetime) -> None:
    """In the purchase's transaction: a refused or rolled-back purchase leaves them issued."""
    for coupon, amount in applied.coupons:
        coupon.status = "used"
        coupon.used_at = now
        coupon.transaction_id = transaction_id
        coupon.discount_minor = amount
