"""Principals as FastAPI dependencies: `Depends(require(Perm.X))` resolves and checks the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.db import Database
from patron.errors import Forbidden, Unauthorized

# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread
# pool, and a hop there and back for each of them is a real share of a till request's cost.


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_secret(request: Request) -> bytes:
    secret: bytes = request.app.state.secret
    return secret


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_actor(request: Request, db: Database = Depends(get_db)) -> Actor:
    cached: Actor | None = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    actor = access.cached_key(token) if token else None
    if actor is None and token:
        actor = await run_in_threadpool(db.read, lambda s: access.authenticate_key(s, token))
    if actor is None:
        raise Unauthorized("Send a valid API key as `Authorization: Bearer <key>`")
    request.state.actor = actor
    return actor


def require(perm: Perm) -> Callable[..., Awaitable[Actor]]:
    async def dependency(actor: Actor = Depends(current_actor)) -> Actor:
        if not actor.can(perm):
            raise Forbidden(f"The {actor.role} role may not do this")
        return actor

    dependency.__name__ = f"require_{perm.value}"
    return dependency
