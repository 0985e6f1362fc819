"""The one error contract: every failure leaves as application/problem+json with a stable code."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"


class PatronError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://patron.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        body.update(self.extra)
        return body


class InternalError(PatronError):
    status = 500
    code = "internal_error"
    title = "Internal error"


# 4xx: the caller's side ------------------------------------------------------------------------


class ValidationFailed(PatronError):
    status = 422
    code = "validation_error"
    title = "The request is not valid"

    def __init__(self, detail: str, *, field: str | None = None, errors: list[dict[str, str]] | None = None):
        if errors is None:
            errors = [{"field": field or "", "message": detail}]
        super().__init__(detail, errors=errors)


class Unauthorized(PatronError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(PatronError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this role"


class NotFound(PatronError):
    status = 404
    code = "not_found"
    title = "Not found"


class TooManyRequests(PatronError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


# 409: business refusals ------------------------------------------------------------------------


class Conflict(PatronError):
    status = 409
    code = "conflict"
    title = "Refused"


class MemberExists(Conflict):
    code = "member_exists"
    title = "A member with this email or phone already exists"


class SelfReferral(Conflict):
    code = "self_referral"
    title = "A member cannot refer themself"


class MemberBlocked(Conflict):
    code = "member_blocked"
    title = "The member is blocked"


class CardInUse(Conflict):
    code = "card_in_use"
    title = "The card number belongs to another member"


class CardBlocked(Conflict):
    code = "card_blocked"
    title = "The card is blocked"


class CardStateConflict(Conflict):
    code = "card_state"
    title = "The card cannot do this in its current status"


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    title = "Not enough points available"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    title = "This external_id was already used with a different request"


class CouponUsed(Conflict):
    code = "coupon_used"
    title = "The coupon has already been used"


class CouponExpired(Conflict):
    code = "coupon_expired"
    title = "The coupon has expired"


class CouponNotOwned(Conflict):
    code = "coupon_not_owned"
    title = "The coupon belongs to another member"


class CouponNotApplicable(Conflict):
    code = "coupon_not_applicable"
    title = "The coupon does not apply to this purchase"


class OutOfStock(Conflict):
    code = "out_of_stock"
    title = "The reward is out of stock"


class LimitReached(Conflict):
    code = "limit_reached"
    title = "The member has reached the limit for this reward"


class NotEligible(Conflict):
    code = "not_eligible"
    title = "The member is not eligible"


class ApprovalRequired(Conflict):
    code = "approval_required"
    title = "This action needs a second person's approval"


class SegmentExists(Conflict):
    code = "segment_exists"
    title = "A segment with this code already exists"


class SegmentProtected(Conflict):
    code = "segment_protected"
    title = "The segment ships with the programme and cannot be deleted"


class SegmentInUse(Conflict):
    code = "segment_in_use"
    title = "Earning rules are restricted to this segment"
