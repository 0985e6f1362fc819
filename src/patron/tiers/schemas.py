from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import DecimalText, Stripped

Metric = Literal["points", "spend", "visits"]
GRACE = (
    "Downgrade with grace: a member keeps a tier at least this many days after reaching it (their "
    "last change into it) before `requalify-tiers` may move them down. Upgrades are never held back. "
    "Optional; absent or 0 means no grace. Shown only when it was given."
)


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Stripped, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")]
    name: Annotated[str, Stripped, Field(min_length=1, max_length=100)]
    threshold: Annotated[int, Field(ge=0)]
    multiplier: DecimalText = Decimal(1)
    benefits: list[Annotated[str, Stripped, Field(min_length=1, max_length=200)]] = Field(default_factory=list)


class LadderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Metric
    window_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    grace_days: Annotated[int, Field(ge=0, le=3650)] | None = Field(default=None, description=GRACE)
    tiers: list[TierIn] = Field(min_length=1, max_length=20)


class TierOut(BaseModel):
    code: str
    name: str
    threshold: int
    multiplier: DecimalText
    benefits: list[str]


class LadderOut(BaseModel):
    metric: Metric
    window_days: int | None
    grace_days: int | None = Field(default=None, description=GRACE, exclude_if=lambda v: v is None)
    tiers: list[TierOut]
