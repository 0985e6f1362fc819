from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import Stripped
from patron.transactions.schemas import ExternalId

EntryKind = Literal["earn", "redeem", "adjust", "expire", "reverse", "restore", "bonus"]
Reason = Annotated[str, Stripped, Field(min_length=1, max_length=500)]


class EntryOut(BaseModel):
    id: uuid.UUID
    kind: EntryKind
    points: int
    balance_after: int
    created_at: datetime
    transaction_id: uuid.UUID | None
    rule_id: uuid.UUID | None
    reason: str | None
    expires_at: datetime | None


class EntryList(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class Expiring(BaseModel):
    points: int
    expires_at: datetime


class PointsOut(BaseModel):
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int
    expiring: list[Expiring]


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    points: Annotated[int, Field(ge=-100_000_000, le=100_000_000)]
    reason: Reason


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    points: Annotated[int, Field(gt=0, le=100_000_000)]
    reason: Reason | None = None
