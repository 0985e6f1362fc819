"""Pydantic field types shared by the API schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from patron.kit.money import parse_decimal


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError('expected a decimal string such as "1250.00"')
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        # A JSON number is accepted, read through its shortest text form so 0.1 stays 0.1.
        return parse_decimal(repr(value) if isinstance(value, float) else str(value))
    if isinstance(value, str):
        return parse_decimal(value.strip())
    raise ValueError('expected a decimal string such as "1250.00"')


DecimalText = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(lambda d: str(d), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["1250.00"]}),
]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs an offset (RFC 3339), for example 2026-05-01T10:00:00+03:00")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Stripped = BeforeValidator(_strip)
