"""Identifiers: time-ordered UUIDs for primary keys, random human codes."""

from __future__ import annotations

import secrets
import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A UUIDv7: unique, and ordered by creation time, so it doubles as a stable sort key."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


# No 0/O, 1/I/L, 5/S, 2/Z: codes are read aloud over the phone and typed from paper.
DICTATION_ALPHABET = "346789ABCDEFGHJKMNPQRTUVWXY"


def dictation_code(length: int) -> str:
    return "".join(secrets.choice(DICTATION_ALPHABET) for _ in range(length))


def random_digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))
