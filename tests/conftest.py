"""The whole suite runs on SQLite and on a real PostgreSQL server that this file starts.

Every test that asks for `db` (directly or through `client`) runs twice, once per database, on a
fresh copy of a migrated template: a copied file for SQLite, CREATE DATABASE ... TEMPLATE for
PostgreSQL. Nothing leaks from one test to the next.

Set PATRON_TEST_POSTGRES_URL (an admin URL such as postgresql+psycopg://user@host:port/postgres)
to use a server you run yourself; PATRON_TEST_DATABASES=sqlite runs one database only.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from patron import migrate
from patron.config import Settings
from patron.db import Database
from tests import pgserver
from tests.api_client import Api

TEST_SECRET = "test-secret-not-for-production"
KINDS = [k for k in os.environ.get("PATRON_TEST_DATABASES", "sqlite,postgresql").split(",") if k]
_counter = itertools.count()


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("PATRON_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    server = pgserver.start()
    try:
        yield server.admin_url
    finally:
        server.stop()


def _pg_exec(admin_url: str, sql: str) -> None:
    u = make_url(admin_url)
    with psycopg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database, autocommit=True
    ) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, secret=TEST_SECRET, env="development", log_level="WARNING")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(settings_for(f"sqlite:///{path}"), pool=False)
    migrate.upgrade(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    name = f"patron_template_{_worker()}"
    _pg_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name}")
    _pg_exec(pg_admin_url, f"CREATE DATABASE {name}")
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    db = Database(settings_for(url), pool=False)
    migrate.upgrade(db.engine)
    db.dispose()
    return name


@pytest.fixture(params=KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "patron.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    admin_url: str = request.getfixturevalue("pg_admin_url")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"t_{_worker()}_{next(_counter)}"
    _pg_exec(admin_url, f"CREATE DATABASE {name} TEMPLATE {template_name}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_exec(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(db_url: str) -> Settings:
    return settings_for(db_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    from patron.app import create_app

    return create_app(settings, db)


@pytest.fixture
def api(app, db: Database) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, db)
