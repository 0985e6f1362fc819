from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from patron.kit.types import Stripped
from patron.members.schemas import MemberOut

Match = Literal["all", "any"]
Op = Literal["gte", "gt", "lte", "lt", "eq", "in"]
SegmentCode = Annotated[str, Stripped, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")]
SegmentName = Annotated[str, Stripped, Field(min_length=1, max_length=100)]
Description = Annotated[str, Stripped, Field(max_length=500)]

_SCALAR = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
# The type depends on the field (service.py checks it): a decimal string for spend, an integer for
# counts, days and birthday_month, a string otherwise; `in` takes a list of them.
Value = Annotated[
    Any,
    WithJsonSchema(
        {
            "oneOf": [_SCALAR, {"type": "array", "items": _SCALAR, "minItems": 1}],
            "examples": ["50000.00", 4, "tyres", ["oil_change", "tyres"]],
        }
    ),
]
FieldName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=80,
        description="spend, visits, points_earned, days_since_last_visit, days_since_enrolled, tier, "
        "category, birthday_month, channel or attribute.NAME",
    ),
]


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: FieldName
    op: Op
    value: Value
    window_days: (
        Annotated[
            int,
            Field(ge=1, le=3650, description="spend, visits, points_earned, category: the days that end at as_of"),
        ]
        | None
    ) = None


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: SegmentCode
    name: SegmentName
    description: Description | None = None
    match: Match = "all"
    conditions: list[ConditionIn] = Field(min_length=1, max_length=20)


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SegmentName | None = None
    description: Description | None = None
    match: Match | None = None
    conditions: list[ConditionIn] | None = Field(None, min_length=1, max_length=20)


class ConditionOut(BaseModel):
    field: str
    op: Op
    value: Value
    window_days: int | None = None


class SegmentOut(BaseModel):
    code: str
    name: str
    description: str | None
    match: Match
    conditions: list[ConditionOut]
    system: bool
    size: int | None = Field(description="Members at the last refresh; null before the first")
    refreshed_at: datetime | None = Field(description="The instant the last refresh evaluated (its as_of)")
    created_at: datetime
    updated_at: datetime


class SegmentList(BaseModel):
    items: list[SegmentOut]
    next_cursor: str | None


class SegmentMemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None
    total: int


class SizeOut(BaseModel):
    measured_at: datetime
    size: int
    joined: int
    left: int


class SizeList(BaseModel):
    items: list[SizeOut]
    next_cursor: str | None
