from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.kit.types import DecimalText, Stripped


class Expiry(BaseModel):
    policy: Literal["none", "after_days", "end_of_year"]
    days: int | None = Field(default=None, ge=1, le=36500)


class ProgramOut(BaseModel):
    name: str
    currency: str
    timezone: str
    phone_region: str
    point_value: DecimalText
    pending_days: int
    expiry: Expiry
    rules_version: str


class ProgramPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Stripped, Field(min_length=1, max_length=200)] | None = None
    currency: Annotated[str, Stripped, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    timezone: Annotated[str, Stripped, Field(min_length=1, max_length=64)] | None = None
    phone_region: Annotated[str, Stripped, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    point_value: DecimalText | None = None
    pending_days: int | None = Field(default=None, ge=0, le=3650)
    expiry: Expiry | None = None
    rules_version: Annotated[str, Stripped, Field(min_length=1, max_length=40)] | None = None
