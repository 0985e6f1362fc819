"""What the cashier typed, swiped or scanned into the till's one field, and whose it is.

One field takes everything: a magnetic-stripe swipe (a keyboard-wedge reader types the tracks,
perhaps in a Russian or full-width layout), a loyalty or bank card number, the member number
from the member's own QR, a phone number, a coupon code from a scanned coupon QR, or an email.
Card and member numbers are tried before phones, since both are runs of digits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy.orm import Session

from patron.cards import service as cards
from patron.errors import NotFound, ValidationFailed
from patron.kit.track import normalize_keystrokes
from patron.members import service as members
from patron.members.models import Member
from patron.rewards import service as rewards

_PHONE_CHARS = re.compile(r"^\+?[\d\s()\-.]{6,24}$")
_DIGITS = re.compile(r"^[\d\s\-]+$")


@dataclass(frozen=True)
class Found:
    member: Member
    how: str  # track | card | phone | coupon | email
    coupon: str | None = None  # the coupon code, when a coupon was scanned


def looks_like_track(text: str) -> bool:
    keys = normalize_keystrokes(text)
    return keys.startswith(("%", ";")) or ("=" in keys and keys.rstrip().endswith("?"))


def find(session: Session, raw: str, secret: bytes) -> Found:
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise ValidationFailed("Swipe a card or type a number", field="q")
    if looks_like_track(raw):
        return Found(cards.identify(session, "track", raw, secret), "track")
    if "@" in text:
        return Found(cards.identify(session, "email", text, secret), "email")
    if _DIGITS.match(text) and not text.startswith("+"):
        try:
            return Found(cards.identify(session, "card", text, secret), "card")
        except NotFound:
            pass  # not a card or member number: perhaps a phone written without its +
    if _PHONE_CHARS.match(text):
        try:
            return Found(cards.identify(session, "phone", text, secret), "phone")
        except ValidationFailed as exc:
            raise NotFound("No member with this card or phone") from exc
    code = rewards.normalise_code(text)
    if code is not None:
        coupon = rewards.find(session, code)
        member = members.get(session, coupon.member_id)
        if member.status == "erased":
            raise NotFound("No such coupon")
        return Found(member, "coupon", rewards.display_code(code))
    raise NotFound("No member with this card, phone or code")
