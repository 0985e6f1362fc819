"""The earning arithmetic of API.md ("Transactions", steps 3 to 7) on rules/engine.py alone: no database.

Money is in minor units here, as the engine takes it: 10000 is 100.00 RUB.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.rules import engine
from patron.rules.engine import Basket, Conditions, Line, MemberContext, Occasion, Rule

MOSCOW = ZoneInfo("Europe/Moscow")
WEDNESDAY_NOON = datetime(2026, 6, 3, 9, 0, tzinfo=UTC)  # 12:00 in Moscow, a Wednesday
MEMBER = MemberContext(tier_code="member", tier_name="Member", tier_multiplier=Decimal(1))


def rule(kind: str, name: str | None = None, **fields) -> Rule:  # type: ignore[no-untyped-def]
    for key in ("skus", "categories", "weekdays", "channels", "locations", "tiers", "segments"):
        if key in fields and not isinstance(fields[key], frozenset):
            fields[key] = frozenset(fields[key])
    if "factor" in fields:
        fields["factor"] = Decimal(fields["factor"])
    return Rule(id=uuid.uuid4(), name=name or kind, kind=kind, **fields)


def line(sku: str, total: int, *, net: int | None = None, category: str | None = None, quantity: str = "1") -> Line:
    return Line(sku=sku, category=category, quantity=Decimal(quantity), total=total, net=total if net is None else net)


def basket(
    *lines: Line,
    total: int | None = None,
    amount_due: int | None = None,
    at: datetime = WEDNESDAY_NOON,
    channel: str | None = "pos",
    location: str | None = None,
) -> Basket:
    if total is None:
        total = sum(x.total for x in lines)
    if amount_due is None:
        amount_due = sum(x.net for x in lines) if lines else total
    return Basket(total=total, amount_due=amount_due, lines=lines, occurred_at=at, channel=channel, location=location)


def earn(b: Basket, *rules: Rule, member: MemberContext = MEMBER) -> engine.Result:
    return engine.earn(b, rules, member, MOSCOW)


def points_by_rule(result: engine.Result) -> dict[str, int]:
    return {c.rule_name: c.points for c in result.breakdown}


# Step 4: amount-based rules ---------------------------------------------------------------------


def test_spend_is_floor_of_amount_due_over_per_amount_times_points():
    spend = rule("spend", points=3, per_amount=10000)
    # 1234.56 due: floor(1234.56 / 100.00) = 12, × 3 = 36
    result = earn(basket(total=123456), spend)
    assert result.points == 36
    assert result.breakdown == (engine.Contribution(spend.id, "spend", 36),)


def test_spend_counts_amount_due_not_total():
    spend = rule("spend", points=1, per_amount=10000)
    # total 2000.00, of which 100.00 was paid with points: floor(1900.00 / 100.00) × 1 = 19, not 20
    assert earn(basket(total=200000, amount_due=190000), spend).points == 19
    # 99.99 due is below one step: nothing
    assert earn(basket(total=9999), spend).points == 0
    # exactly one step
    assert earn(basket(total=10000), spend).points == 1


def test_category_rule_counts_the_net_of_matching_lines():
    oil = rule("category", points=5, per_amount=10000, categories={"oil"})
    b = basket(
        line("OIL-5W30", 150000, net=142500, category="oil"),
        line("FILTER", 50000, net=47500, category="filters"),
        line("OIL-0W20", 10000, net=9999, category="oil"),
    )
    # oil nets 1425.00 + 99.99 = 1524.99 → floor(15.2499) = 15, × 5 = 75 (totals would give 16 × 5 = 80)
    assert earn(b, oil).points == 75


def test_category_rule_with_several_categories():
    rule_ = rule("category", points=2, per_amount=5000, categories={"oil", "filters"})
    b = basket(
        line("A", 30000, category="oil"),
        line("B", 24999, category="filters"),
        line("C", 90000, category="tyres"),
    )
    # 300.00 + 249.99 = 549.99 → floor(549.99 / 50.00) = 10, × 2 = 20
    assert earn(b, rule_).points == 20


def test_sku_rule_with_per_amount_counts_the_net_of_its_lines():
    wash = rule("sku", points=4, per_amount=20000, skus={"WASH", "WAX"})
    b = basket(
        line("WASH", 45000, net=43000),
        line("WAX", 30000, net=28500),
        line("OIL", 100000, net=95000),
    )
    # 430.00 + 285.00 = 715.00 → floor(715 / 200) = 3, × 4 = 12
    assert earn(b, wash).points == 12


def test_max_points_caps_the_rules_own_points():
    spend = rule("spend", points=3, per_amount=10000, max_points=30)
    oil = rule("category", points=5, per_amount=10000, categories={"oil"}, max_points=1000)
    b = basket(line("OIL", 123456, category="oil"))
    # spend: 12 × 3 = 36, capped at 30; oil: 12 × 5 = 60, under its cap
    result = earn(b, spend, oil)
    assert points_by_rule(result) == {"spend": 30, "category": 60}
    assert result.points == 90


def test_several_spend_rules_each_add_their_own_points():
    base = rule("spend", "base", points=1, per_amount=10000)
    promo = rule("spend", "promo", points=7, per_amount=100000)
    # 2500.00: base floor(25) × 1 = 25; promo floor(2.5) × 7 = 14
    result = earn(basket(total=250000), base, promo)
    assert points_by_rule(result) == {"base": 25, "promo": 14}
    assert result.points == 39


# Step 5: multipliers ----------------------------------------------------------------------------

OIL_BASKET = basket(
    line("OIL-5W30", 150000, net=142500, category="oil"),
    line("FILTER", 50000, net=47500, category="filters"),
)
SPEND = rule("spend", "spend", points=1, per_amount=10000)
OIL = rule("category", "oil", points=5, per_amount=10000, categories={"oil"})


def test_restricted_multiplier_adds_p_times_factor_minus_one():
    double_oil = rule("multiplier", "double oil", factor="2", categories={"oil"})
    # step 4: spend floor(1900.00 / 100) × 1 = 19; oil floor(1425.00 / 100) × 5 = 70 → 89
    # P on the oil line alone: spend floor(1425.00 / 100) = 14, oil 70 → 84; adds floor(84 × (2 − 1)) = 84
    result = earn(OIL_BASKET, SPEND, OIL, double_oil)
    assert points_by_rule(result) == {"spend": 19, "oil": 70, "double oil": 84}
    assert result.points == 173


def test_restricted_multiplier_floors_its_addition():
    oil_and_a_quarter = rule("multiplier", "oil ×1.25", factor="1.25", categories={"oil"})
    # P = 84 as above; floor(84 × 0.25) = 21
    assert points_by_rule(earn(OIL_BASKET, SPEND, OIL, oil_and_a_quarter))["oil ×1.25"] == 21
    odd = rule("multiplier", "oil ×1.3", factor="1.3", categories={"oil"})
    # floor(84 × 0.3) = floor(25.2) = 25
    assert points_by_rule(earn(OIL_BASKET, SPEND, OIL, odd))["oil ×1.3"] == 25


def test_restricted_multiplier_by_sku_and_its_cap():
    filters = rule("multiplier", "filters ×3", factor="3", skus={"FILTER"}, max_points=5)
    # P on FILTER alone: spend floor(475.00 / 100) = 4, oil rule 0 → 4; floor(4 × 2) = 8, capped at 5
    result = earn(OIL_BASKET, SPEND, OIL, filters)
    assert points_by_rule(result) == {"spend": 19, "oil": 70, "filters ×3": 5}
    assert result.points == 94


def test_restricted_multiplier_without_matching_lines_adds_nothing():
    tyres = rule("multiplier", "tyres ×2", factor="2", categories={"tyres"})
    result = earn(OIL_BASKET, SPEND, OIL, tyres)
    assert result.points == 89
    assert "tyres ×2" not in points_by_rule(result)


def test_unrestricted_multiplier_and_tier_multiply_the_running_sum_once():
    weekend = rule("multiplier", "×1.5", factor="1.5")
    gold = MemberContext(tier_code="gold", tier_name="Gold", tier_multiplier=Decimal("1.2"))
    # 89 × 1.5 × 1.2 = 160.2 → 160. (Flooring after each factor would give floor(133 × 1.2) = 159.)
    result = earn(OIL_BASKET, SPEND, OIL, weekend, member=gold)
    assert result.points == 160
    # Each factor is credited with what it adds in turn: 133 − 89 = 44, then 160 − 133 = 27
    assert [(c.rule_id, c.rule_name, c.points) for c in result.breakdown] == [
        (SPEND.id, "spend", 19),
        (OIL.id, "oil", 70),
        (weekend.id, "×1.5", 44),
        (None, "Tier Gold ×1.2", 27),
    ]
    assert sum(c.points for c in result.breakdown) == result.points


def test_two_unrestricted_multipliers_multiply_by_their_product():
    a = rule("multiplier", "a", factor="1.1")
    b = rule("multiplier", "b", factor="1.1")
    # 89 × 1.21 = 107.69 → 107 (sequential floors: floor(89 × 1.1) = 97, floor(97 × 1.1) = 106)
    result = earn(OIL_BASKET, SPEND, OIL, a, b)
    assert result.points == 107
    assert sum(c.points for c in result.breakdown) == 107


def test_multiplier_below_one_lowers_the_sum():
    half = rule("multiplier", "half", factor="0.5")
    # floor(89 × 0.5) = 44; the multiplier is credited with 44 − 89 = −45
    result = earn(OIL_BASKET, SPEND, OIL, half)
    assert result.points == 44
    assert points_by_rule(result)["half"] == -45


def test_restricted_additions_are_multiplied_by_the_unrestricted_ones():
    oil_half_more = rule("multiplier", "oil ×1.5", factor="1.5", categories={"oil"})
    double = rule("multiplier", "double", factor="2")
    # 89 + floor(84 × 0.5) = 89 + 42 = 131; × 2 = 262
    result = earn(OIL_BASKET, SPEND, OIL, oil_half_more, double)
    assert points_by_rule(result) == {"spend": 19, "oil": 70, "oil ×1.5": 42, "double": 131}
    assert result.points == 262


def test_tier_multiplier_of_one_is_not_listed():
    result = earn(OIL_BASKET, SPEND, OIL)
    assert [c.rule_name for c in result.breakdown] == ["spend", "oil"]


def test_restricted_multipliers_below_one_cannot_make_earning_negative():
    # Two "half points on oil" rules on the only line: P = 10 each time, each adds floor(10 × −0.5) = −5 …
    b = basket(line("OIL", 20000, category="oil"))
    only_oil = rule("category", "oil", points=5, per_amount=10000, categories={"oil"})
    halves = [rule("multiplier", f"half {i}", factor="0.5", categories={"oil"}) for i in range(3)]
    # … so three of them would take 15 from 10: the running sum stops at zero.
    result = earn(b, only_oil, *halves)
    assert result.points == 0
    assert sum(c.points for c in result.breakdown) == 0


# Step 6: fixed bonuses --------------------------------------------------------------------------


def test_sku_without_per_amount_gives_points_per_unit():
    filter_bonus = rule("sku", "filter bonus", points=10, skus={"FILTER"})
    b = basket(line("FILTER", 150000, quantity="3"), line("OIL", 10000), line("FILTER", 50000, quantity="2"))
    # 3 + 2 units × 10 = 50, whatever they cost
    assert earn(b, filter_bonus).points == 50


def test_sku_bonus_on_fractional_quantity_is_floored():
    per_litre = rule("sku", "per litre", points=3, skus={"OIL-BULK"})
    # 1.25 l × 3 = 3.75 → 3
    assert earn(basket(line("OIL-BULK", 125000, quantity="1.25")), per_litre).points == 3
    # 2.5 l × 10 = 25 exactly
    ten = rule("sku", "ten", points=10, skus={"OIL-BULK"})
    assert earn(basket(line("OIL-BULK", 250000, quantity="2.5")), ten).points == 25


def test_visit_gives_its_points_once():
    visit = rule("visit", "visit", points=25)
    assert earn(basket(line("A", 100), line("B", 100)), visit).points == 25
    assert earn(basket(total=0), visit).points == 25


def test_fixed_bonuses_come_last_and_are_never_multiplied():
    filter_bonus = rule("sku", "filter bonus", points=10, skus={"FILTER"})
    visit = rule("visit", "visit", points=25)
    double = rule("multiplier", "double", factor="2")
    filters_x3 = rule("multiplier", "filters ×3", factor="3", skus={"FILTER"})
    b = basket(line("OIL", 140000), line("FILTER", 50000, quantity="3"))
    # step 4: spend floor(1900 / 100) = 19
    # step 5: FILTER lines alone give P = floor(500 / 100) = 5 → +floor(5 × 2) = 10; running 29; × 2 → 58
    # step 6: 3 filters × 10 = 30, visit 25, never multiplied → 58 + 30 + 25 = 113
    gold = MemberContext(tier_code="gold", tier_name="Gold", tier_multiplier=Decimal(1))
    result = earn(b, visit, filter_bonus, SPEND, double, filters_x3, member=gold)
    assert points_by_rule(result) == {
        "spend": 19,
        "filters ×3": 10,
        "double": 29,
        "visit": 25,
        "filter bonus": 30,
    }
    assert result.points == 113
    # the amount-based contributions come first, the fixed bonuses last
    assert [c.rule_name for c in result.breakdown][:3] == ["spend", "filters ×3", "double"]


def test_max_points_caps_a_fixed_bonus():
    filter_bonus = rule("sku", "filter bonus", points=10, skus={"FILTER"}, max_points=25)
    assert earn(basket(line("FILTER", 100, quantity="4")), filter_bonus).points == 25


def test_breakdown_leaves_out_rules_that_gave_nothing():
    result = earn(basket(total=5000), SPEND, rule("visit", "visit", points=5))
    assert [(c.rule_name, c.points) for c in result.breakdown] == [("visit", 5)]


# Conditions -------------------------------------------------------------------------------------


def conditional(**conditions) -> Rule:  # type: ignore[no-untyped-def]
    for key in ("weekdays", "channels", "locations", "tiers", "segments"):
        if key in conditions:
            conditions[key] = frozenset(conditions[key])
    return Rule(id=uuid.uuid4(), name="visit", kind="visit", points=7, conditions=Conditions(**conditions))


def earns(r: Rule, b: Basket | None = None, member: MemberContext = MEMBER) -> bool:
    return earn(b or basket(total=10000), r, member=member).points == 7


def test_starts_at_is_inclusive_and_ends_at_exclusive():
    start = WEDNESDAY_NOON
    r = conditional(starts_at=start, ends_at=start + timedelta(days=1))
    assert not earns(r, basket(total=1, at=start - timedelta(seconds=1)))
    assert earns(r, basket(total=1, at=start))
    assert earns(r, basket(total=1, at=start + timedelta(days=1) - timedelta(microseconds=1)))
    assert not earns(r, basket(total=1, at=start + timedelta(days=1)))


def test_weekdays_are_taken_in_the_programme_time_zone():
    sunday_late_utc = datetime(2026, 6, 7, 23, 30, tzinfo=UTC)  # Sunday in UTC, Monday 02:30 in Moscow
    assert sunday_late_utc.isoweekday() == 7
    monday = conditional(weekdays={1})
    sunday = conditional(weekdays={7})
    assert earns(monday, basket(total=1, at=sunday_late_utc))
    assert not earns(sunday, basket(total=1, at=sunday_late_utc))
    # 20:59 UTC Sunday is still 23:59 Sunday in Moscow
    assert earns(sunday, basket(total=1, at=datetime(2026, 6, 7, 20, 59, tzinfo=UTC)))
    assert not earns(monday, basket(total=1, at=datetime(2026, 6, 7, 20, 59, tzinfo=UTC)))


def test_weekend_rule_with_several_days():
    weekend = conditional(weekdays={6, 7})
    assert not earns(weekend, basket(total=1, at=WEDNESDAY_NOON))
    assert earns(weekend, basket(total=1, at=WEDNESDAY_NOON + timedelta(days=3)))  # Saturday
    assert earns(weekend, basket(total=1, at=WEDNESDAY_NOON + timedelta(days=4)))  # Sunday


def test_channels_and_locations():
    web_only = conditional(channels={"web", "mobile"})
    assert earns(web_only, basket(total=1, channel="web"))
    assert not earns(web_only, basket(total=1, channel="pos"))
    shop = conditional(locations={"MSK-01"})
    assert earns(shop, basket(total=1, location="MSK-01"))
    assert not earns(shop, basket(total=1, location="SPB-01"))
    assert not earns(shop, basket(total=1, location=None))


def test_tiers_and_segments():
    gold_only = conditional(tiers={"gold", "platinum"})
    gold = MemberContext(tier_code="gold", tier_name="Gold", tier_multiplier=Decimal(1), segments=frozenset({"new"}))
    assert earns(gold_only, member=gold)
    assert not earns(gold_only, member=MEMBER)
    vip = conditional(segments={"vip", "regular"})
    assert not earns(vip, member=gold)
    in_vip = MemberContext(
        tier_code="member", tier_name="Member", tier_multiplier=Decimal(1), segments=frozenset({"vip"})
    )
    assert earns(vip, member=in_vip)


def test_min_total_compares_the_purchase_total():
    r = conditional(min_total=195000)
    # total 2000.00 paid partly with points (1900.00 due): the total counts
    assert earns(r, basket(total=200000, amount_due=190000))
    assert earns(r, basket(total=195000))
    assert not earns(r, basket(total=194999))


def test_a_rule_whose_conditions_fail_adds_nothing_and_is_not_listed():
    closed = Rule(
        id=uuid.uuid4(),
        name="closed",
        kind="spend",
        points=100,
        per_amount=100,
        conditions=Conditions(channels=frozenset({"web"})),
    )
    result = earn(basket(total=10000), SPEND, closed)
    assert [(c.rule_name, c.points) for c in result.breakdown] == [("spend", 1)]


def test_a_multiplier_with_failing_conditions_multiplies_nothing():
    sunday_double = Rule(
        id=uuid.uuid4(),
        name="sunday",
        kind="multiplier",
        factor=Decimal(2),
        conditions=Conditions(weekdays=frozenset({7})),
    )
    assert earn(OIL_BASKET, SPEND, OIL, sunday_double).points == 89


# Bonuses (welcome, birthday, referral, event) ---------------------------------------------------


def test_bonus_gives_the_points_of_matching_rules_of_that_kind():
    survey = rule("event", "survey", points=50, event_type="survey")
    profile = rule("event", "profile", points=30, event_type="profile_completed")
    welcome = rule("welcome", "welcome", points=100)
    when = Occasion(at=WEDNESDAY_NOON)
    result = engine.bonus("event", [survey, profile, welcome], MEMBER, when, MOSCOW, event_type="survey")
    assert result.points == 50
    assert result.breakdown == (engine.Contribution(survey.id, "survey", 50),)
    result = engine.bonus("welcome", [survey, profile, welcome], MEMBER, when, MOSCOW)
    assert result.points == 100
    assert engine.bonus("event", [survey], MEMBER, when, MOSCOW, event_type="other").points == 0


def test_bonus_respects_conditions_and_cap():
    capped = Rule(id=uuid.uuid4(), name="capped", kind="welcome", points=500, max_points=200)
    web = Rule(
        id=uuid.uuid4(), name="web", kind="welcome", points=40, conditions=Conditions(channels=frozenset({"web"}))
    )
    pos = Occasion(at=WEDNESDAY_NOON, channel="pos")
    assert engine.bonus("welcome", [capped, web], MEMBER, pos, MOSCOW).points == 200
    assert (
        engine.bonus("welcome", [capped, web], MEMBER, Occasion(at=WEDNESDAY_NOON, channel="web"), MOSCOW).points == 240
    )


# spread -----------------------------------------------------------------------------------------


def test_spread_exact_proportions():
    # 100.00 over 1500.00 and 500.00: 75.00 and 25.00
    assert engine.spread(10000, [150000, 50000]) == [7500, 2500]


def test_spread_gives_leftover_units_to_the_largest_remainders():
    # 50 over 100/200/300: exact 8.33, 16.67, 25 → floors 8, 16, 25 (49); the 1 left goes to 16.67
    assert engine.spread(50, [100, 200, 300]) == [8, 17, 25]
    # 2 over 1/1/1/… ties go to the earlier lines
    assert engine.spread(100, [1, 1, 1]) == [34, 33, 33]
    assert engine.spread(2, [5, 5, 5]) == [1, 1, 0]


def test_spread_edges():
    assert engine.spread(0, [100, 200]) == [0, 0]
    assert engine.spread(300, [100, 200]) == [100, 200]
    assert engine.spread(7, [0, 10, 0]) == [0, 7, 0]
    assert engine.spread(5, []) == []


# Properties -------------------------------------------------------------------------------------

CATEGORIES = ["oil", "filters", "tyres"]
SKUS = ["A", "B", "C", "D"]
factors = st.decimals(min_value=Decimal("0.1"), max_value=Decimal("3"), places=2)


@st.composite
def baskets(draw: st.DrawFn) -> Basket:
    n = draw(st.integers(min_value=0, max_value=5))
    totals = draw(st.lists(st.integers(min_value=0, max_value=1_000_000), min_size=n, max_size=n))
    total = sum(totals) if n else draw(st.integers(min_value=0, max_value=1_000_000))
    paid_otherwise = draw(st.integers(min_value=0, max_value=total))
    shares = engine.spread(paid_otherwise, totals)
    lines = tuple(
        Line(
            sku=draw(st.sampled_from(SKUS)),
            category=draw(st.sampled_from([*CATEGORIES, None])),
            quantity=draw(st.decimals(min_value=Decimal("0.5"), max_value=Decimal(5), places=1)),
            total=t,
            net=t - s,
        )
        for t, s in zip(totals, shares, strict=True)
    )
    return Basket(
        total=total,
        amount_due=total - paid_otherwise,
        lines=lines,
        occurred_at=WEDNESDAY_NOON,
        channel="pos",
        location=None,
    )


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    kind = draw(st.sampled_from(["spend", "category", "sku", "sku", "visit", "multiplier", "multiplier"]))
    max_points = draw(st.none() | st.integers(min_value=0, max_value=500))
    rid = uuid.uuid4()
    if kind == "multiplier":
        restrict = draw(st.sampled_from(["none", "sku", "category"]))
        return Rule(
            id=rid,
            name=kind,
            kind=kind,
            factor=draw(factors),
            skus=frozenset(draw(st.sets(st.sampled_from(SKUS), min_size=1))) if restrict == "sku" else frozenset(),
            categories=frozenset(draw(st.sets(st.sampled_from(CATEGORIES), min_size=1)))
            if restrict == "category"
            else frozenset(),
            max_points=max_points,
        )
    points = draw(st.integers(min_value=1, max_value=50))
    per_amount = draw(st.integers(min_value=1, max_value=50_000))
    if kind == "spend":
        return Rule(id=rid, name=kind, kind=kind, points=points, per_amount=per_amount, max_points=max_points)
    if kind == "category":
        cats = frozenset(draw(st.sets(st.sampled_from(CATEGORIES), min_size=1)))
        return Rule(
            id=rid, name=kind, kind=kind, points=points, per_amount=per_amount, categories=cats, max_points=max_points
        )
    if kind == "sku":
        return Rule(
            id=rid,
            name=kind,
            kind=kind,
            points=points,
            per_amount=draw(st.none() | st.just(per_amount)),
            skus=frozenset(draw(st.sets(st.sampled_from(SKUS), min_size=1))),
            max_points=max_points,
        )
    return Rule(id=rid, name=kind, kind=kind, points=points, max_points=max_points)


members = st.builds(
    MemberContext,
    tier_code=st.just("member"),
    tier_name=st.just("Member"),
    tier_multiplier=st.sampled_from([Decimal(1), Decimal("1.25"), Decimal("1.5"), Decimal(2), Decimal("0.5")]),
)


@settings(max_examples=300, deadline=None)
@given(b=baskets(), rs=st.lists(rules(), max_size=6), member=members)
def test_property_breakdown_sums_to_points_and_earning_is_never_negative(b, rs, member):
    result = engine.earn(b, rs, member, MOSCOW)
    assert sum(c.points for c in result.breakdown) == result.points
    assert result.points >= 0
    assert all(c.points != 0 for c in result.breakdown)


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8),
    data=st.data(),
)
def test_property_spread_is_exact_and_proportional(weights, data):
    total = sum(weights)
    amount = data.draw(st.integers(min_value=0, max_value=total))
    shares = engine.spread(amount, weights)
    assert len(shares) == len(weights)
    if total == 0:
        assert shares == [0] * len(weights)
        return
    assert sum(shares) == amount
    for share, weight in zip(shares, weights, strict=True):
        assert 0 <= share <= weight
        # each share is its exact proportion rounded down or up, never further
        assert abs(Fraction(share) - Fraction(amount * weight, total)) < 1


@settings(max_examples=300, deadline=None)
@given(
    points=st.integers(min_value=1, max_value=100),
    per_amount=st.integers(min_value=1, max_value=100_000),
    max_points=st.none() | st.integers(min_value=0, max_value=1000),
    tier=st.sampled_from([Decimal(1), Decimal("1.1"), Decimal("1.5"), Decimal(3)]),
    amounts=st.tuples(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=10**8)),
)
def test_property_spend_earning_is_monotone_in_amount(points, per_amount, max_points, tier, amounts):
    low, high = sorted(amounts)
    spend = Rule(
        id=uuid.uuid4(), name="spend", kind="spend", points=points, per_amount=per_amount, max_points=max_points
    )
    member = MemberContext(tier_code="member", tier_name="Member", tier_multiplier=tier)
    at_low = engine.earn(basket(total=low), [spend], member, MOSCOW).points
    at_high = engine.earn(basket(total=high), [spend], member, MOSCOW).points
    assert 0 <= at_low <= at_high


@pytest.mark.parametrize(
    ("amount_due", "expected"),
    [(0, 0), (9999, 0), (10000, 2), (19999, 2), (20000, 4), (1_000_000, 200)],
)
def test_spend_steps(amount_due, expected):
    # floor(amount / 100.00) × 2
    assert earn(basket(total=amount_due), rule("spend", points=2, per_amount=10000)).points == expected
