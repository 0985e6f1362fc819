"""Engine, sessions and the column types every model shares.

Locking policy (applies to every service that reads then writes a balance, stock or coupon):

* PostgreSQL runs at READ COMMITTED. A service that reads a row and then writes on the strength
  of what it read takes a row lock first (`SELECT ... FOR UPDATE`). When it needs several such
  rows it locks them in primary-key order, so two transactions never wait on each other in a
  cycle. Locked transactions stay short: no network calls while a lock is held.
* SQLite has one writer at a time. Write transactions start with `BEGIN IMMEDIATE`, so the write
  lock is taken before the first read and a read-then-write can never be overtaken.
* A transaction that fails on a serialization failure, a deadlock or a busy SQLite file is
  retried from the start by `Database.write`, a few times with a short random back-off.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Dialect,
    Engine,
    Insert,
    MetaData,
    Table,
    Uuid,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from patron.config import Settings

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that is always UTC, on PostgreSQL and on SQLite.

    SQLite has no time zones: values go in as naive UTC and come back with UTC restored.
    Naive datetimes are refused, so local times can never sneak in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def among(column: Any, ids: Sequence[uuid.UUID], dialect: str) -> ColumnElement[bool]:
    """`column IN ids` for a chunk of thousands of ids. On PostgreSQL a semi-join with
    unnest(array): the planner costs a long IN list (or `= ANY(array)`) as if it were searched
    linearly and may scan the whole table instead, once per chunk, so that a job over all the
    members took time in the square of their number."""
    if dialect == "postgresql":
        return column.in_(select(func.unnest(bindparam(None, list(ids), type_=ARRAY(Uuid())))))  # type: ignore[no-any-return]
    return column.in_(ids)  # type: ignore[no-any-return]


def by_key_only(session: Session) -> None:
    """For the rest of this transaction, plan without sequential scans (PostgreSQL). For a job's
    chunk, whose statements reach a few thousand rows through their keys: costing a random read
    at four sequential ones, the planner otherwise hashes the whole table to join a chunk of
    5,000 ids to it, once per chunk, so that a job over all the members grew with the square of
    their number (90 ms a chunk at 200,000 members, against 13 ms through the primary key)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))


@functools.cache
def insert_into(table: Table) -> Insert:
    """`INSERT INTO table`, built once: executed again, a statement object reuses its cache key,
    where building a new one each time was a real share of a till request's CPU."""
    return insert(table)


def make_engine(settings: Settings, *, pool: bool = True) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
            poolclass=None if pool else NullPool,
            hide_parameters=True,
        )
        _configure_sqlite(engine)
        return engine
    # No pre-ping (a round trip per checkout): a connection found dead is invalidated and
    # Database.write/read retry the transaction on a fresh one.
    kwargs: dict[str, Any] = {"pool_recycle": 3600}
    if pool:
        kwargs.update(pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size)
    else:
        kwargs["poolclass"] = NullPool
    return create_engine(url, hide_parameters=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    # The driver runs in autocommit mode (isolation_level=None above) and we emit BEGIN ourselves,
    # so that write transactions can take the lock up front with BEGIN IMMEDIATE.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("patron_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _is_retryable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:  # the server restarted or the connection dropped
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):  # serialization_failure, deadlock_detected
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)


class Database:
    """The engine plus the transaction boundaries used by the API, the CLI and the jobs."""

    def __init__(self, settings: Settings, *, pool: bool = True) -> None:
        self.settings = settings
        self.engine = make_engine(settings, pool=pool)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any exception."""
        with Session(self.engine, expire_on_commit=False, autoflush=True) as session:
            session.connection(execution_options={"patron_write": write})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def read(self, fn: Callable[[Session], T]) -> T:
        try:
            with self.session() as session:
                return fn(session)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self.session() as session:  # once more, on a fresh connection
            return fn(session)

    def write(self, fn: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run fn in a write transaction, retrying it whole on a transient conflict."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session(write=True) as session:
                    return fn(session)
            except DBAPIError as exc:
                if attempt == attempts or not _is_retryable(exc):
                    raise
                time.sleep(random.uniform(0.005, 0.03) * attempt)  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()
