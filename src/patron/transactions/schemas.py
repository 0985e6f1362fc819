from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import AwareDatetime, DecimalText, Stripped
from patron.members.schemas import PointsSummary, TierRef

ExternalId = Annotated[str, Stripped, Field(min_length=1, max_length=200)]
Sku = Annotated[str, Stripped, Field(min_length=1, max_length=100)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Annotated[str, Field(max_length=200)] | None = None
    category: Annotated[str, Stripped, Field(min_length=1, max_length=100)] | None = None
    quantity: DecimalText = Decimal(1)
    unit_price: DecimalText


class TransactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    member_id: uuid.UUID | None = None
    card: Annotated[str, Stripped, Field(min_length=1, max_length=40)] | None = None
    phone: Annotated[str, Stripped, Field(min_length=1, max_length=40)] | None = None
    occurred_at: AwareDatetime | None = None
    location: Annotated[str, Stripped, Field(min_length=1, max_length=40)] | None = None
    channel: Literal["pos", "web", "mobile", "call_center", "import"] = "pos"
    items: list[ItemIn] | None = Field(default=None, max_length=500)
    total: DecimalText | None = None
    coupons: list[Annotated[str, Stripped, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    redeem_points: Annotated[int, Field(ge=0)] = 0


class BreakdownOut(BaseModel):
    rule_id: uuid.UUID | None
    rule_name: str
    points: int


class CouponUseOut(BaseModel):
    code: str
    discount: DecimalText


class TransactionOut(BaseModel):
    id: uuid.UUID
    external_id: str
    member_id: uuid.UUID
    occurred_at: AwareDatetime
    location: str | None
    channel: str
    total: DecimalText
    discount: DecimalText
    points_redeemed: int
    points_value: DecimalText
    amount_due: DecimalText
    points_earned: int
    breakdown: list[BreakdownOut]
    balance: PointsSummary
    tier: TierRef
    coupons: list[CouponUseOut]


class ReturnItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: DecimalText


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    items: list[ReturnItemIn] | None = Field(default=None, min_length=1, max_length=500)
    amount: DecimalText | None = None


class ReturnOut(BaseModel):
    id: uuid.UUID
    transaction_id: uuid.UUID
    points_reversed: int
    points_restored: int
    balance: PointsSummary
