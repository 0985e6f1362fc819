from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import DecimalText, Stripped
from patron.transactions.schemas import ExternalId

RewardKind = Literal["percent_discount", "amount_discount", "free_item", "gift", "privilege"]
CouponStatus = Literal["issued", "used", "expired", "cancelled"]
# Why a member may not claim a reward now: the code the claim would be refused with.
Refusal = Literal["member_blocked", "not_eligible", "out_of_stock", "limit_reached", "insufficient_points"]

RewardName = Annotated[str, Stripped, Field(min_length=1, max_length=200)]
Description = Annotated[str, Stripped, Field(max_length=1000)]
Code = Annotated[str, Stripped, Field(min_length=1, max_length=40)]
Sku = Annotated[str, Stripped, Field(min_length=1, max_length=100)]


class RewardPatch(BaseModel):
    """The fields a reward's owner may change; RewardIn adds what a new reward must say."""

    model_config = ConfigDict(extra="forbid")

    name: RewardName | None = None
    description: Description | None = None
    kind: RewardKind | None = Field(None, description="Cannot change: only repeated as it is")
    value: DecimalText | None = Field(
        None, description="percent_discount: the percent (0 < value <= 100); amount_discount: the amount"
    )
    sku: Sku | None = Field(None, description="free_item: the SKU given free (one unit of it)")
    max_discount: DecimalText | None = Field(None, description="percent_discount: the most it takes off")
    cost_points: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = None
    stock: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(
        None, description="How many are left to claim; null is unlimited"
    )
    limit_per_member: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="Claims per member (cancelled ones do not count); null is unlimited"
    )
    tiers: list[Code] | None = Field(None, max_length=50, description="Only members in these tiers may claim")
    segments: list[Code] | None = Field(
        None, max_length=50, description="Only members in at least one of these segments may claim"
    )
    valid_days: Annotated[int, Field(ge=1, le=36_500)] | None = Field(
        None, description="A coupon is valid this many days from its claim"
    )
    active: bool | None = None


class RewardIn(RewardPatch):
    name: RewardName
    kind: RewardKind
    cost_points: Annotated[int, Field(ge=0, le=1_000_000_000)]
    valid_days: Annotated[int, Field(ge=1, le=36_500)]
    active: bool = True


class RewardOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    kind: RewardKind
    value: DecimalText | None
    sku: str | None
    max_discount: DecimalText | None
    cost_points: int
    stock: int | None = Field(description="Left to claim; null is unlimited")
    limit_per_member: int | None
    tiers: list[str]
    segments: list[str]
    valid_days: int
    active: bool
    claimed: int = Field(description="Coupons issued and not cancelled")
    created_at: datetime
    updated_at: datetime


class RewardList(BaseModel):
    items: list[RewardOut]
    next_cursor: str | None


class MemberRewardOut(RewardOut):
    """A reward as one member sees it, for the till and the member portal."""

    eligible: bool = Field(description="Tier, segments, stock, limit and the member's status allow a claim")
    affordable: bool = Field(description="The member has the points available")
    reason: Refusal | None = Field(description="The code a claim would be refused with now; null if it would succeed")
    claimed_by_member: int = Field(description="This member's coupons of the reward, cancelled ones aside")


class MemberRewardList(BaseModel):
    items: list[MemberRewardOut]
    next_cursor: str | None


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Stripped, Field(min_length=1, max_length=300)] | None = None


class CouponOut(BaseModel):
    code: str = Field(description="XXXX-XXXX-XXXX; accepted in any case, with or without dashes or spaces")
    reward_id: uuid.UUID
    member_id: uuid.UUID
    status: CouponStatus
    expires_at: datetime
    used_at: datetime | None
    transaction_id: uuid.UUID | None
    reward_name: str
    kind: RewardKind
    value: DecimalText | None = Field(description="The terms as claimed: percent or amount")
    sku: str | None
    max_discount: DecimalText | None
    discount: DecimalText | None = Field(description="What the coupon took off the purchase it was used in")
    points_spent: int
    claimed_at: datetime
    cancelled_at: datetime | None


class CouponList(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None
