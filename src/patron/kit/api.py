"""Shared pieces of the HTTP layer: paging parameters and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, max 500)")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a route can give."""
    described = {
        401: "No or unknown API key (`unauthorized`)",
        403: "The key's role may not do this (`forbidden`)",
        404: "Not found (`not_found`)",
        409: "Business refusal; `code` says which",
        422: "Malformed input (`validation_error`, with `errors`)",
    }
    return {
        s: {"model": Problem, "description": described.get(s, "Problem"), "content": {"application/problem+json": {}}}
        for s in (401, 403, *statuses)
    }
