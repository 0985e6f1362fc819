"""The earning arithmetic of API.md, as pure functions of (basket, rules, member, programme).

Money is in integer minor units throughout; points are integers; every rounding of points is a
floor, taken in one place (`_floor`). Nothing here touches the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

AMOUNT_KINDS = ("spend", "category", "sku")
BONUS_KINDS = ("welcome", "birthday", "referral", "event")


@dataclass(frozen=True)
class Line:
    sku: str
    category: str | None
    quantity: Decimal
    total: int  # quantity × unit price, minor units
    net: int  # after the discount and points payment spread over the lines


@dataclass(frozen=True)
class Basket:
    total: int
    amount_due: int
    lines: tuple[Line, ...]
    occurred_at: datetime
    channel: str | None
    location: str | None


@dataclass(frozen=True)
class MemberContext:
    tier_code: str
    tier_name: str
    tier_multiplier: Decimal
    segments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Conditions:
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekdays: frozenset[int] = frozenset()
    channels: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    min_total: int | None = None


@dataclass(frozen=True)
class Rule:
    id: uuid.UUID | None
    name: str
    kind: str
    points: int = 0
    per_amount: int | None = None
    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    factor: Decimal | None = None
    event_type: str | None = None
    max_points: int | None = None
    conditions: Conditions = field(default_factory=Conditions)

    @property
    def restricted(self) -> bool:
        return bool(self.skus or self.categories)

    def matches_line(self, line: Line) -> bool:
        return (not self.skus or line.sku in self.skus) and (not self.categories or line.category in self.categories)


@dataclass(frozen=True)
class Contribution:
    rule_id: uuid.UUID | None
    rule_name: str
    points: int


@dataclass(frozen=True)
class Result:
    points: int
    breakdown: tuple[Contribution, ...]


@dataclass(frozen=True)
class Occasion:
    """When and where something happened, for the rule conditions."""

    at: datetime
    channel: str | None = None
    location: str | None = None
    total: int | None = None


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _cap(rule: Rule, points: int) -> int:
    return min(points, rule.max_points) if rule.max_points is not None else points


def conditions_hold(c: Conditions, when: Occasion, member: MemberContext, tz: ZoneInfo) -> bool:
    if c.starts_at is not None and when.at < c.starts_at:
        return False
    if c.ends_at is not None and when.at >= c.ends_at:
        return False
    if c.weekdays and when.at.astimezone(tz).isoweekday() not in c.weekdays:
        return False
    if c.channels and when.channel not in c.channels:
        return False
    if c.locations and when.location not in c.locations:
        return False
    if c.tiers and member.tier_code not in c.tiers:
        return False
    if c.segments and not (c.segments & member.segments):
        return False
    return c.min_total is None or (when.total is not None and when.total >= c.min_total)


def _amount_rule_points(rule: Rule, lines: Sequence[Line], spend_base: int) -> int:
    """Step 4 for one rule over `lines`: floor(net / per_amount) × points, capped."""
    assert rule.per_amount
    if rule.kind == "spend":
        base = spend_base
    else:
        base = sum(line.net for line in lines if rule.matches_line(line))
    return _cap(rule, (max(base, 0) // rule.per_amount) * rule.points)


def _is_amount_rule(rule: Rule) -> bool:
    return rule.kind in ("spend", "category") or (rule.kind == "sku" and rule.per_amount is not None)


def earn(basket: Basket, rules: Iterable[Rule], member: MemberContext, tz: ZoneInfo) -> Result:
    """Points a purchase earns, and which rule gave what (API.md "Transactions", steps 4 to 7)."""
    when = Occasion(at=basket.occurred_at, channel=basket.channel, location=basket.location, total=basket.total)
    live = [r for r in rules if conditions_hold(r.conditions, when, member, tz)]
    amount_rules = [r for r in live if _is_amount_rule(r)]
    breakdown: list[Contribution] = []

    # Step 4: amount-based rules over the whole basket (spend over amount_due).
    running = 0
    for rule in amount_rules:
        pts = _amount_rule_points(rule, basket.lines, basket.amount_due)
        running += pts
        breakdown.append(Contribution(rule.id, rule.name, pts))

    # Step 5a: multipliers restricted to some lines add floor(P × (factor − 1)), where P is what the
    # step-4 rules give on those lines alone.
    multipliers = [r for r in live if r.kind == "multiplier" and r.factor is not None]
    for rule in (r for r in multipliers if r.restricted):
        assert rule.factor is not None
        subset = [line for line in basket.lines if rule.matches_line(line)]
        subset_net = sum(line.net for line in subset)
        p = sum(_amount_rule_points(r, subset, subset_net) for r in amount_rules)
        added = _cap(rule, _floor(Decimal(p) * (rule.factor - 1)))
        # Several multipliers below one on the same lines could take away more than was earned:
        # a purchase never earns negative points, so the running sum stops at zero.
        added = max(added, -running)
        running += added
        breakdown.append(Contribution(rule.id, rule.name, added))

    # Step 5b: unrestricted multipliers and the tier multiply the running sum once:
    # floor(sum × product). Each is credited with what it adds when applied in turn, so the
    # breakdown still sums exactly to the total.
    factors: list[tuple[Rule | None, Decimal]] = [(r, r.factor) for r in multipliers if not r.restricted and r.factor]
    if member.tier_multiplier != 1:
        factors.append((None, member.tier_multiplier))
    base, product, previous = running, Decimal(1), running
    for multiplier, factor in factors:
        product *= factor
        cumulative = _floor(Decimal(base) * product)
        added = cumulative - previous
        if multiplier is not None and multiplier.max_points is not None and added > multiplier.max_points:
            added = multiplier.max_points
            # A capped multiplier leaves the later ones to multiply what was really reached.
            base, product, cumulative = previous + added, Decimal(1), previous + added
        previous = cumulative
        running += added
        name = multiplier.name if multiplier is not None else f"Tier {member.tier_name} ×{member.tier_multiplier}"
        breakdown.append(Contribution(multiplier.id if multiplier else None, name, added))

    # Step 6: fixed bonuses, never multiplied.
    for rule in live:
        if rule.kind == "sku" and rule.per_amount is None:
            units = sum((line.quantity for line in basket.lines if rule.matches_line(line)), Decimal(0))
            pts = _cap(rule, _floor(units * rule.points))
        elif rule.kind == "visit":
            pts = _cap(rule, rule.points)
        else:
            continue
        running += pts
        breakdown.append(Contribution(rule.id, rule.name, pts))

    contributing = tuple(c for c in breakdown if c.points != 0)
    return Result(points=sum(c.points for c in contributing), breakdown=contributing)


def bonus(
    kind: str,
    rules: Iterable[Rule],
    member: MemberContext,
    when: Occasion,
    tz: ZoneInfo,
    *,
    event_type: str | None = None,
) -> Result:
    """Fixed points from welcome, birthday, referral and event rules whose conditions hold."""
    out = []
    for rule in rules:
        if rule.kind != kind or (kind == "event" and rule.event_type != event_type):
            continue
        if not conditions_hold(rule.conditions, when, member, tz):
            continue
        pts = _cap(rule, rule.points)
        if pts:
            out.append(Contribution(rule.id, rule.name, pts))
    return Result(points=sum(c.points for c in out), breakdown=tuple(out))


def spread(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` minor units over lines in proportion to `weights`, exactly: floors first, then
    the units left over go to the largest remainders (ties to the earlier line)."""
    total = sum(weights)
    if total <= 0 or amount == 0:
        return [0] * len(weights)
    shares = [amount * w // total for w in weights]
    remainders = [(amount * w % total, -i) for i, w in enumerate(weights)]
    left = amount - sum(shares)
    for _, neg_i in sorted(remainders, reverse=True)[:left]:
        shares[-neg_i] += 1
    return shares
