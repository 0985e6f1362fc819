from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from patron.kit.types import Stripped

Language = Literal["en", "ru", "zh"]
Channel = Literal["pos", "web", "mobile", "call_center", "import"]
Name = Annotated[str, Stripped, Field(min_length=1, max_length=100)]
AttrKey = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _check_attributes(value: dict[str, str | None] | None) -> dict[str, str | None] | None:
    if value is not None:
        if len(value) > 50:
            raise ValueError("at most 50 attributes")
        for v in value.values():
            if v is not None and len(v) > 500:
                raise ValueError("an attribute value has at most 500 characters")
    return value


class ConsentsIn(BaseModel):
    program_rules: bool
    marketing_email: bool = False
    marketing_sms: bool = False
    marketing_push: bool = False


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Name
    last_name: Name
    email: Annotated[str, Stripped, Field(max_length=254)] | None = None
    phone: Annotated[str, Stripped, Field(max_length=40)] | None = None
    birth_date: date | None = None
    language: Language = "en"
    channel: Channel = "pos"
    referral_code: Annotated[str, Stripped, Field(max_length=20)] | None = None
    attributes: dict[AttrKey, str] = Field(default_factory=dict)
    consents: ConsentsIn
    location: Annotated[str, Stripped, Field(max_length=40)] | None = None

    _attrs = field_validator("attributes")(_check_attributes)


class ConsentsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    marketing_email: bool | None = None
    marketing_sms: bool | None = None
    marketing_push: bool | None = None


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Name | None = None
    last_name: Name | None = None
    email: Annotated[str, Stripped, Field(max_length=254)] | None = None
    phone: Annotated[str, Stripped, Field(max_length=40)] | None = None
    birth_date: date | None = None
    language: Language | None = None
    attributes: dict[AttrKey, str | None] | None = None
    consents: ConsentsPatch | None = None

    _attrs = field_validator("attributes")(_check_attributes)


class BlockIn(BaseModel):
    reason: Annotated[str, Stripped, Field(min_length=1, max_length=500)]


class TierRef(BaseModel):
    code: str
    name: str


class TierProgress(BaseModel):
    metric: Literal["points", "spend", "visits"]
    value: int | str
    next_tier: str | None
    needed: int | str | None


class PointsSummary(BaseModel):
    available: int
    pending: int


class ConsentsOut(BaseModel):
    program_rules: bool
    rules_version: str
    rules_accepted_at: datetime
    marketing_email: bool
    marketing_sms: bool
    marketing_push: bool


class MemberOut(BaseModel):
    id: uuid.UUID
    number: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    birth_date: date | None
    language: str
    status: Literal["active", "blocked", "erased"]
    tier: TierRef
    tier_progress: TierProgress
    points: PointsSummary
    segments: list[str]
    referral_code: str
    enrolled_at: datetime
    channel: str
    consents: ConsentsOut
    attributes: dict[str, str]


class MemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None
