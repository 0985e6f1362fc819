"""Earning rules: managed through the API, turned into engine.Rule values for the arithmetic."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.errors import NotFound, ValidationFailed
from patron.kit import cache, clock
from patron.kit.money import from_minor, to_minor
from patron.kit.pagination import page
from patron.program import service as program_service
from patron.rules import engine
from patron.rules.models import EarningRule
from patron.rules.schemas import ConditionsIn, ConditionsOut, RuleIn, RuleOut, RulePatch

NEEDS_POINTS = {"spend", "category", "sku", "visit", "event", "welcome", "birthday", "referral"}


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(dict.fromkeys(value))


def _money(session: Session, value: Decimal, field: str) -> int:
    currency = program_service.get(session).currency
    if value <= 0:
        raise ValidationFailed(f"{field} must be above zero", field=field)
    try:
        return to_minor(value, currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field=field) from exc


def _conditions(session: Session, c: ConditionsIn | None) -> dict[str, Any]:
    if c is None:
        return {}
    out: dict[str, Any] = {}
    if c.starts_at and c.ends_at and c.ends_at <= c.starts_at:
        raise ValidationFailed("ends_at must be after starts_at", field="conditions.ends_at")
    for name in ("starts_at", "ends_at"):
        value = getattr(c, name)
        if value is not None:
            out[name] = value.isoformat()
    for name in ("weekdays", "channels", "locations", "tiers", "segments"):
        value = getattr(c, name)
        if value:
            out[name] = sorted(set(value)) if name == "weekdays" else list(dict.fromkeys(value))
    if c.min_total is not None:
        if c.min_total < 0:
            raise ValidationFailed("min_total cannot be negative", field="conditions.min_total")
        currency = program_service.get(session).currency
        try:
            out["min_total"] = to_minor(c.min_total, currency)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="conditions.min_total") from exc
    return out


def _check(rule: EarningRule) -> None:
    """The fields each kind needs, checked on the rule as it will be stored."""
    kind = rule.kind
    if kind in NEEDS_POINTS and not rule.points:
        raise ValidationFailed(f"a {kind} rule needs points above zero", field="points")
    if kind in ("spend", "category") and rule.per_amount_minor is None:
        raise ValidationFailed(f"a {kind} rule needs per_amount", field="per_amount")
    if kind == "category" and not rule.categories:
        raise ValidationFailed("a category rule needs category", field="category")
    if kind == "sku" and not rule.skus:
        raise ValidationFailed("a sku rule needs sku", field="sku")
    if kind == "multiplier":
        if rule.factor is None:
            raise ValidationFailed("a multiplier rule needs factor", field="factor")
        if Decimal(rule.factor) <= 0:
            raise ValidationFailed("factor must be above zero", field="factor")
    if kind == "event" and not rule.event_type:
        raise ValidationFailed("an event rule needs event_type", field="event_type")
    if rule.per_amount_minor is not None and kind not in ("spend", "category", "sku"):
        raise ValidationFailed(f"per_amount does not apply to a {kind} rule", field="per_amount")
    if (rule.skus or rule.categories) and kind not in ("category", "sku", "multiplier"):
        field = "sku" if rule.skus else "category"
        raise ValidationFailed(f"{field} does not apply to a {kind} rule", field=field)


def _apply(session: Session, rule: EarningRule, fields: dict[str, Any], data: RuleIn | RulePatch) -> None:
    if "name" in fields:
        rule.name = fields["name"]
    if "points" in fields:
        rule.points = fields["points"] or 0
    if "per_amount" in fields:
        rule.per_amount_minor = _money(session, data.per_amount, "per_amount") if data.per_amount is not None else None
    shape = dict(rule.shape or {})
    if "sku" in fields:
        rule.skus = _as_list(data.sku)
        shape["sku"] = "one" if isinstance(data.sku, str) else "many"
    if "category" in fields:
        rule.categories = _as_list(data.category)
        shape["category"] = "one" if isinstance(data.category, str) else "many"
    rule.shape = shape
    if "factor" in fields:
        rule.factor = str(data.factor) if data.factor is not None else None
    if "event_type" in fields:
        rule.event_type = fields["event_type"]
    if "max_points" in fields:
        rule.max_points = fields["max_points"]
    if "active" in fields and fields["active"] is not None:
        rule.active = fields["active"]
    if "conditions" in fields:
        rule.conditions = _conditions(session, data.conditions)


def create(session: Session, actor: Actor, data: RuleIn) -> EarningRule:
    now = clock.now()
    rule = EarningRule(kind=data.kind, skus=[], categories=[], conditions={}, shape={}, created_at=now, updated_at=now)
    _apply(session, rule, data.model_dump(exclude_unset=True) | {"name": data.name, "active": data.active}, data)
    _check(rule)
    session.add(rule)
    session.flush()
    program_service.bump_config(session)
    audit.record(session, actor, "rule.create", "earning_rule", rule.id, {"kind": rule.kind})
    return rule


def get(session: Session, rule_id: uuid.UUID, *, for_update: bool = False) -> EarningRule:
    rule = session.get(EarningRule, rule_id, with_for_update=for_update, populate_existing=for_update)
    if rule is None or rule.deleted_at is not None:
        raise NotFound("No such earning rule")
    return rule


def update(session: Session, actor: Actor, rule_id: uuid.UUID, patch: RulePatch) -> EarningRule:
    rule = get(session, rule_id, for_update=True)
    fields = patch.model_dump(exclude_unset=True)
    _apply(session, rule, fields, patch)
    _check(rule)
    rule.updated_at = clock.now()
    program_service.bump_config(session)
    audit.record(session, actor, "rule.update", "earning_rule", rule.id, {"fields": sorted(fields)})
    return rule


def delete(session: Session, actor: Actor, rule_id: uuid.UUID) -> None:
    rule = get(session, rule_id, for_update=True)
    rule.deleted_at = clock.now()
    rule.active = False
    program_service.bump_config(session)
    audit.record(session, actor, "rule.delete", "earning_rule", rule.id)


def listing(
    session: Session, *, kind: str | None, active: bool | None, limit: int, cursor: str | None
) -> tuple[Sequence[EarningRule], str | None]:
    stmt = select(EarningRule).where(EarningRule.deleted_at.is_(None))
    if kind:
        stmt = stmt.where(EarningRule.kind == kind)
    if active is not None:
        stmt = stmt.where(EarningRule.active.is_(active))
    return page(session, stmt, EarningRule.id, limit=limit, cursor=cursor, newest_first=False)


def _codes_out(values: list[str], shape: str | None) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if shape == "one" and len(values) == 1 else list(values)


def to_out(session: Session, rule: EarningRule) -> RuleOut:
    currency = program_service.get(session).currency
    c = rule.conditions or {}
    return RuleOut(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        points=rule.points,
        per_amount=from_minor(rule.per_amount_minor, currency) if rule.per_amount_minor is not None else None,
        category=_codes_out(rule.categories, (rule.shape or {}).get("category")),
        sku=_codes_out(rule.skus, (rule.shape or {}).get("sku")),
        factor=Decimal(rule.factor) if rule.factor is not None else None,
        event_type=rule.event_type,
        max_points=rule.max_points,
        active=rule.active,
        conditions=ConditionsOut(
            starts_at=datetime.fromisoformat(c["starts_at"]) if "starts_at" in c else None,
            ends_at=datetime.fromisoformat(c["ends_at"]) if "ends_at" in c else None,
            weekdays=c.get("weekdays"),
            channels=c.get("channels"),
            locations=c.get("locations"),
            tiers=c.get("tiers"),
            segments=c.get("segments"),
            min_total=from_minor(c["min_total"], currency) if "min_total" in c else None,
        ),
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def to_engine(rule: EarningRule) -> engine.Rule:
    c = rule.conditions or {}
    return engine.Rule(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        points=rule.points,
        per_amount=rule.per_amount_minor,
        skus=frozenset(rule.skus or ()),
        categories=frozenset(rule.categories or ()),
        factor=Decimal(rule.factor) if rule.factor is not None else None,
        event_type=rule.event_type,
        max_points=rule.max_points,
        conditions=engine.Conditions(
            starts_at=datetime.fromisoformat(c["starts_at"]) if "starts_at" in c else None,
            ends_at=datetime.fromisoformat(c["ends_at"]) if "ends_at" in c else None,
            weekdays=frozenset(c.get("weekdays") or ()),
            channels=frozenset(c.get("channels") or ()),
            locations=frozenset(c.get("locations") or ()),
            tiers=frozenset(c.get("tiers") or ()),
            segments=frozenset(c.get("segments") or ()),
            min_total=c.get("min_total"),
        ),
    )


def active_rules(session: Session, kinds: Sequence[str] | None = None) -> list[engine.Rule]:
    """The active rules in creation order, from the per-process cache while they are unchanged."""

    def load() -> tuple[engine.Rule, ...]:
        stmt = select(EarningRule).where(EarningRule.active.is_(True), EarningRule.deleted_at.is_(None))
        return tuple(to_engine(r) for r in session.scalars(stmt.order_by(EarningRule.id)))

    version = program_service.get(session).config_version
    every = cache.versioned(session, "earning_rules", version, load)
    return [r for r in every if not kinds or r.kind in kinds]
