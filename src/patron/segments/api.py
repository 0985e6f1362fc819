from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.kit.api import Cursor, Limit, problems
from patron.members import service as members
from patron.segments import service
from patron.segments.schemas import (
    SegmentIn,
    SegmentList,
    SegmentMemberList,
    SegmentOut,
    SegmentPatch,
    SizeList,
    SizeOut,
)

router = APIRouter(tags=["segments"])


@router.post("/segments", status_code=201, response_model=SegmentOut, responses=problems(409, 422))
def create_segment(
    body: SegmentIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> SegmentOut:
    return db.write(lambda s: service.to_out(s, service.create(s, actor, body)))


@router.get("/segments", response_model=SegmentList, responses=problems(422))
def list_segments(
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.READ_ALL)),
) -> SegmentList:
    def run(s: Session) -> SegmentList:
        rows, next_cursor = service.listing(s, limit=limit, cursor=cursor)
        return SegmentList(items=[service.to_out(s, r) for r in rows], next_cursor=next_cursor)

    return db.read(run)


@router.get("/segments/{code}", response_model=SegmentOut, responses=problems(404))
def get_segment(code: str, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.READ_ALL))) -> SegmentOut:
    return db.read(lambda s: service.to_out(s, service.get(s, code)))


@router.patch("/segments/{code}", response_model=SegmentOut, responses=problems(404, 422))
def patch_segment(
    code: str, body: SegmentPatch, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> SegmentOut:
    return db.write(lambda s: service.to_out(s, service.update(s, actor, code, body)))


@router.delete("/segments/{code}", status_code=204, responses=problems(404, 409))
def delete_segment(
    code: str, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> Response:
    db.write(lambda s: service.delete_segment(s, actor, code))
    return Response(status_code=204)


@router.get("/segments/{code}/members", response_model=SegmentMemberList, responses=problems(404, 422))
def segment_members(
    code: str,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.READ_ALL)),
) -> SegmentMemberList:
    """The members the last `refresh-segments` put in the segment."""

    def run(s: Session) -> SegmentMemberList:
        rows, next_cursor, total = service.members_page(s, code, limit=limit, cursor=cursor)
        return SegmentMemberList(items=members.present_many(s, rows), next_cursor=next_cursor, total=total)

    return db.read(run)


@router.get("/segments/{code}/sizes", response_model=SizeList, responses=problems(404, 422))
def segment_sizes(
    code: str,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.READ_ALL)),
) -> SizeList:
    """The segment's size at each refresh, the latest first."""

    def run(s: Session) -> SizeList:
        rows, next_cursor = service.sizes_page(s, code, limit=limit, cursor=cursor)
        items = [SizeOut(measured_at=r.measured_at, size=r.size, joined=r.joined, left=r.left) for r in rows]
        return SizeList(items=items, next_cursor=next_cursor)

    return db.read(run)
