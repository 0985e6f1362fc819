from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import AwareDatetime, Stripped
from patron.members.schemas import PointsSummary
from patron.transactions.schemas import BreakdownOut, ExternalId


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    member_id: uuid.UUID
    type: Annotated[str, Stripped, Field(min_length=1, max_length=60)]
    occurred_at: AwareDatetime | None = None


class EventOut(BaseModel):
    points_earned: int
    breakdown: list[BreakdownOut]
    balance: PointsSummary
