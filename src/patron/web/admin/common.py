"""Small helpers shared by the back-office views: reading form fields, the database, paging."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from patron.db import Database
from patron.errors import ValidationFailed
from patron.web import security

M = TypeVar("M", bound=BaseModel)


def db(request: Request) -> Database:
    return security.db_of(request)


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def optional(form: FormData, name: str) -> str | None:
    return text(form, name) or None


def many(form: FormData, name: str) -> list[str]:
    """A multi-valued field (checkboxes), or a comma-separated text field."""
    values = [v.strip() for v in form.getlist(name) if isinstance(v, str)]
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def checked(form: FormData, name: str) -> bool:
    return text(form, name) in ("1", "on", "true", "yes")


def new_external_id(prefix: str) -> str:
    """One per form shown: a double submit of the same form is the same operation, done once."""
    return f"web-{prefix}-{uuid.uuid4().hex}"


def safe_next(target: str | None, default: str = "/admin") -> str:
    """Only our own paths: never an absolute or protocol-relative address (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def build(model: type[M], data: dict[str, Any]) -> M:
    """The pydantic model of a service's input, or ValidationFailed with one error per field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "missing":
                message = "this field is required"
            errors.append({"field": ".".join(str(p) for p in err.get("loc", ())), "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(detail, errors=errors) from exc


def integer(form: FormData, name: str, *, required: bool = True) -> int | None:
    raw = text(form, name).replace(" ", "").replace("\u00a0", "")
    if not raw:
        if required:
            raise ValidationFailed("this field is required", field=name)
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ValidationFailed("enter a whole number", field=name) from exc
