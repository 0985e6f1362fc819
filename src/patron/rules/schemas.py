from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import AwareDatetime, DecimalText, Stripped

RuleKind = Literal["spend", "category", "sku", "visit", "multiplier", "event", "welcome", "birthday", "referral"]
Code = Annotated[str, Stripped, Field(min_length=1, max_length=100)]
Codes = Code | list[Code]


class ConditionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = None
    channels: list[Code] | None = None
    locations: list[Code] | None = None
    tiers: list[Code] | None = None
    segments: list[Code] | None = None
    min_total: DecimalText | None = None


RuleName = Annotated[str, Stripped, Field(min_length=1, max_length=200)]


class RulePatch(BaseModel):
    """The fields a rule's owner may change; RuleIn adds what a new rule must say."""

    model_config = ConfigDict(extra="forbid")

    name: RuleName | None = None
    points: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    per_amount: DecimalText | None = None
    category: Codes | None = None
    sku: Codes | None = None
    factor: DecimalText | None = None
    event_type: Annotated[str, Stripped, Field(min_length=1, max_length=60)] | None = None
    max_points: Annotated[int, Field(ge=0)] | None = None
    active: bool | None = None
    conditions: ConditionsIn | None = None


class RuleIn(RulePatch):
    name: RuleName
    kind: RuleKind
    active: bool = True


class ConditionsOut(BaseModel):
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekdays: list[int] | None = None
    channels: list[str] | None = None
    locations: list[str] | None = None
    tiers: list[str] | None = None
    segments: list[str] | None = None
    min_total: DecimalText | None = None


class RuleOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: RuleKind
    points: int
    per_amount: DecimalText | None
    category: str | list[str] | None
    sku: str | list[str] | None
    factor: DecimalText | None
    event_type: str | None
    max_points: int | None
    active: bool
    conditions: ConditionsOut
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleOut]
    next_cursor: str | None
