"""API keys and staff users."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.access.models import ApiKey, StaffUser
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.audit import service as audit
from patron.errors import Conflict, NotFound, ValidationFailed
from patron.kit import clock

KEY_PREFIX = "ptr_"
_hasher = PasswordHasher()


def _hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    session: Session, actor: Actor, *, role: Role, name: str | None = None, location: str | None = None
) -> tuple[ApiKey, str]:
    """A new key; the plain text is returned once and never stored."""
    body = secrets.token_urlsafe(32)
    token = f"{KEY_PREFIX}{body}"
    key = ApiKey(
        name=name or f"{role.value} key",
        role=role.value,
        location=location,
        prefix=token[:12],
        key_hash=_hash_key(token),
        created_at=clock.now(),
    )
    session.add(key)
    session.flush()
    audit.record(session, actor, "api_key.create", "api_key", key.id, {"role": role.value, "location": location})
    return key, token


def revoke_key(session: Session, actor: Actor, key_id: str) -> ApiKey:
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == key_id)).first()
    if key is None:
        try:
            key = session.get(ApiKey, uuid.UUID(key_id))
        except ValueError:  # neither a prefix nor an id
            key = None
    if key is None:
        raise NotFound("No such API key")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        _key_cache.pop(key.key_hash, None)
        audit.record(session, actor, "api_key.revoke", "api_key", key.id)
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def actor_for_key(key: ApiKey) -> Actor:
    return Actor(kind="api_key", id=str(key.id), name=key.name, role=Role(key.role), location=key.location)


# Keys checked recently, by hash: a till sends hundreds of requests a minute with the same key.
# A revocation takes effect at once in the process that made it and within KEY_CACHE_SECONDS elsewhere.
KEY_CACHE_SECONDS = 10.0
_key_cache: dict[str, tuple[float, Actor]] = {}


def cached_key(token: str) -> Actor | None:
    """The key's principal if it was checked within KEY_CACHE_SECONDS; None means: ask the database."""
    hit = _key_cache.get(_hash_key(token))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def authenticate_key(session: Session, token: str) -> Actor | None:
    if not token.startswith(KEY_PREFIX):
        return None
    cached = cached_key(token)
    if cached is not None:
        return cached
    digest = _hash_key(token)
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if key is None or key.revoked_at is not None:
        _key_cache.pop(digest, None)
        return None
    # The lookup is by hash; compare again in constant time so timing says nothing about near misses.
    if not hmac.compare_digest(key.key_hash, digest):
        return None
    actor = actor_for_key(key)
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, actor)
    return actor


def create_user(
    session: Session,
    actor: Actor,
    *,
    email: str,
    password: str,
    role: Role,
    name: str | None = None,
    location: str | None = None,
) -> StaffUser:
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationFailed("not an email address", field="email")
    if len(password) < 8:
        raise ValidationFailed("a password needs at least 8 characters", field="password")
    user = StaffUser(
        email=email,
        name=name or email.split("@", 1)[0],
        role=role.value,
        location=location,
        password_hash=_hasher.hash(password),
        created_at=clock.now(),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("A staff user with this email already exists") from exc
    audit.record(session, actor, "user.create", "staff_user", user.id, {"role": role.value})
    return user


def set_password(session: Session, actor: Actor, *, email: str, password: str) -> StaffUser:
    user = session.scalars(select(StaffUser).where(StaffUser.email == email.strip().lower())).first()
    if user is None:
        raise NotFound("No staff user with this email")
    if len(password) < 8:
        raise ValidationFailed("a password needs at least 8 characters", field="password")
    user.password_hash = _hasher.hash(password)
    audit.record(session, actor, "user.set_password", "staff_user", user.id)
    return user


def verify_user(session: Session, email: str, password: str) -> StaffUser | None:
    user = session.scalars(select(StaffUser).where(StaffUser.email == email.strip().lower())).first()
    if user is None or not user.active:
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = clock.now()
    return user


def actor_for_user(user: StaffUser) -> Actor:
    return Actor(kind="user", id=str(user.id), name=user.email, role=Role(user.role), location=user.location)
