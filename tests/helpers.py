"""Checks shared by the API tests: problem answers, and the whole database read back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, select

from patron.db import Database

# Every test database of one kind is a copy of the same migrated template: reflect it once.
_reflected: dict[str, MetaData] = {}


def _schema(db: Database) -> MetaData:
    if db.dialect not in _reflected:
        meta = MetaData()
        meta.reflect(db.engine)
        _reflected[db.dialect] = meta
    return _reflected[db.dialect]


def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal dumps mean an unchanged database."""
    meta = _schema(db)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db.engine.connect() as conn:
        for name in sorted(meta.tables):
            if name == "alembic_version":
                continue
            rows = conn.execute(select(meta.tables[name])).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


ROLES = ("admin", "marketer", "agent", "cashier", "analyst")


def state(api: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The database dump, after making sure every role's test key exists (keys are made lazily)."""
    for role in ROLES:
        api.key(role)
    return dump(api.db)


def counts(db: Database) -> dict[str, int]:
    return {name: len(rows) for name, rows in dump(db).items()}


def all_text(db: Database) -> str:
    """Every value of every row of every table as text, one row per line."""
    lines = []
    for name, rows in dump(db).items():
        for row in rows:
            lines.append(f"{name}: " + " | ".join(repr(v) for v in row))
    return "\n".join(lines)


def assert_problem(r: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """`r` is a problem+json answer with this status and code (and, for 422, an error on `field`)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://patron.dev/problems/{code.replace('_', '-')}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body
