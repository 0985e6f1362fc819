from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.access.roles import Perm
from patron.auth import get_db, require
from patron.db import Database
from patron.idempotency.api import run_idempotent
from patron.kit.api import Cursor, Limit, problems
from patron.rewards import images, service
from patron.rewards.schemas import (
    CancelIn,
    ClaimIn,
    CouponList,
    CouponOut,
    CouponStatus,
    MemberRewardList,
    RewardIn,
    RewardKind,
    RewardList,
    RewardOut,
    RewardPatch,
)

router = APIRouter(tags=["rewards and coupons"])

_SVG: dict[int | str, dict[str, Any]] = {200: {"content": {images.SVG_MEDIA_TYPE: {}}, "description": "An SVG image"}}


@router.post("/rewards", status_code=201, response_model=RewardOut, responses=problems(422))
def create_reward(
    body: RewardIn, db: Database = Depends(get_db), actor: Actor = Depends(require(Perm.CONFIGURE))
) -> RewardOut:
    return db.write(lambda s: service.to_out(s, service.create(s, actor, body)))


@router.get("/rewards", response_model=RewardList, responses=problems(422))
def list_rewards(
    active: bool | None = None,
    kind: RewardKind | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.MEMBERS_READ)),
) -> RewardList:
    """The catalogue in creation order."""

    def run(s: Session) -> RewardList:
        rows, next_cursor = service.listing(s, active=active, kind=kind, limit=limit, cursor=cursor)
        return RewardList(items=[service.to_out(s, r) for r in rows], next_cursor=next_cursor)

    return db.read(run)


@router.get("/rewards/{reward_id}", response_model=RewardOut, responses=problems(404))
def get_reward(
    reward_id: uuid.UUID, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> RewardOut:
    return db.read(lambda s: service.to_out(s, service.get(s, reward_id)))


@router.patch("/rewards/{reward_id}", response_model=RewardOut, responses=problems(404, 422))
def patch_reward(
    reward_id: uuid.UUID,
    body: RewardPatch,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.CONFIGURE)),
) -> RewardOut:
    """Changes apply to later claims; coupons already issued keep the terms they were claimed with."""
    return db.write(lambda s: service.to_out(s, service.update(s, actor, reward_id, body)))


@router.post(
    "/members/{member_id}/rewards/{reward_id}/claims",
    status_code=201,
    response_model=CouponOut,
    responses=problems(404, 409, 422),
)
def claim_reward(
    member_id: uuid.UUID,
    reward_id: uuid.UUID,
    body: ClaimIn,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.TRANSACT)),
) -> JSONResponse:
    """Spend the reward's points and issue a coupon. Refusals (409): `member_blocked`,
    `not_eligible`, `out_of_stock`, `limit_reached`, `insufficient_points`; a refusal changes nothing."""
    payload = {"member_id": str(member_id), "reward_id": str(reward_id), **body.model_dump(mode="json")}
    return run_idempotent(
        db, "claim", body.external_id, payload, lambda s: service.claim(s, actor, member_id, reward_id, body)
    )


@router.get("/members/{member_id}/rewards", response_model=MemberRewardList, responses=problems(404, 422))
def member_rewards(
    member_id: uuid.UUID,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.MEMBERS_READ)),
) -> MemberRewardList:
    """The active rewards as this member sees them, with whether a claim would succeed and why not."""
    return db.read(lambda s: service.member_catalogue(s, member_id, limit=limit, cursor=cursor))


@router.get("/members/{member_id}/coupons", response_model=CouponList, responses=problems(404, 422))
def member_coupons(
    member_id: uuid.UUID,
    status: CouponStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    db: Database = Depends(get_db),
    _: Actor = Depends(require(Perm.MEMBERS_READ)),
) -> CouponList:
    """The member's coupons (the wallet), the newest first."""

    def run(s: Session) -> CouponList:
        items, next_cursor = service.member_coupons(s, member_id, status=status, limit=limit, cursor=cursor)
        return CouponList(items=items, next_cursor=next_cursor)

    return db.read(run)


@router.get("/coupons/{code}", response_model=CouponOut, responses=problems(404))
def get_coupon(code: str, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))) -> CouponOut:
    """The code in any case, with or without dashes or spaces."""
    return db.read(lambda s: service.coupon_out(s, service.find(s, code)))


@router.post("/coupons/{code}/cancel", response_model=CouponOut, responses=problems(404, 409, 422))
def cancel_coupon(
    code: str,
    body: CancelIn | None = None,
    db: Database = Depends(get_db),
    actor: Actor = Depends(require(Perm.POINTS_ADJUST)),
) -> JSONResponse:
    """Void an issued coupon: its points go back to the member and its unit back to the stock.
    Used: 409 `coupon_used`; expired: 409 `coupon_expired`. Cancelling a cancelled coupon answers
    it again with `Idempotent-Replayed: true` and changes nothing."""
    reason = body.reason if body else None
    out, replayed = db.write(lambda s: service.cancel(s, actor, code, reason))
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(out.model_dump(mode="json"), headers=headers)


@router.get("/coupons/{code}/qr.svg", response_class=Response, responses={**problems(404), **_SVG})
def coupon_qr(code: str, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))) -> Response:
    coupon = db.read(lambda s: service.find(s, code))
    return Response(images.qr_svg(coupon.code), media_type=images.SVG_MEDIA_TYPE)


@router.get("/coupons/{code}/barcode.svg", response_class=Response, responses={**problems(404), **_SVG})
def coupon_barcode(
    code: str, db: Database = Depends(get_db), _: Actor = Depends(require(Perm.MEMBERS_READ))
) -> Response:
    """Code 128."""
    coupon = db.read(lambda s: service.find(s, code))
    return Response(
        images.barcode_svg(coupon.code, service.display_code(coupon.code)), media_type=images.SVG_MEDIA_TYPE
    )
