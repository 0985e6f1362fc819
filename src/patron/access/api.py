from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from patron.access import service
from patron.access.models import ApiKey
from patron.access.principal import Actor
from patron.access.roles import Perm, Role
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import problems
from patron.kit.types import Stripped

router = APIRouter(tags=["access"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: Annotated[str, Stripped, Field(min_length=1, max_length=100)] | None = None
    location: Annotated[str, Stripped, Field(min_length=1, max_length=40)] | None = None


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    location: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        role=Role(key.role),
        location=key.location,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@router.post("/api-keys", status_code=201, response_model=NewKeyOut, responses=problems(422))
def create_key(
    body: KeyCreate, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.ADMINISTER))
) -> NewKeyOut:
    def run(s: Session) -> NewKeyOut:
        key, token = service.create_key(s, actor, role=body.role, name=body.name, location=body.location)
        return NewKeyOut(**key_out(key).model_dump(), key=token)

    return db.write(run)


@router.get("/api-keys", response_model=dict[str, list[KeyOut]], responses=problems())
def list_keys(db: Database = Depends(get_db), _: Actor = Depends(require(Perm.ADMINISTER))) -> dict[str, list[KeyOut]]:
    return db.read(lambda s: {"items": [key_out(k) for k in service.list_keys(s)]})


@router.delete("/api-keys/{key_id}", response_model=KeyOut, responses=problems(404))
def revoke_key(key_id: str, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.ADMINISTER))) -> KeyOut:
    return db.write(lambda s: key_out(service.revoke_key(s, actor, key_id)))
