from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import Stripped

CardNumber = Annotated[str, Stripped, Field(min_length=1, max_length=40)]


class CardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["loyalty", "bank"] = "loyalty"
    number: CardNumber | None = None
    # Accepted for kind=bank only, hashed at once, and never stored, logged or returned.
    pan: CardNumber | None = None


class CardBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=10000)
    prefix: Annotated[str, Field(pattern=r"^\d{1,10}$")] | None = None


class ActivateIn(BaseModel):
    member_id: uuid.UUID


class BlockCardIn(BaseModel):
    reason: Annotated[str, Stripped, Field(min_length=1, max_length=500)]


class ReplaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: CardNumber | None = None


class CardOut(BaseModel):
    number: str
    kind: Literal["loyalty"]
    status: Literal["issued", "active", "blocked", "replaced"]
    member_id: uuid.UUID | None


class BankCardOut(BaseModel):
    kind: Literal["bank"]
    last4: str
    status: Literal["active", "blocked"]
    member_id: uuid.UUID | None


class CardList(BaseModel):
    items: list[CardOut]
