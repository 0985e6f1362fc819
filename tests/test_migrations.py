"""`patron migrate` and the Alembic revisions, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from patron import migrate
from patron.cli import app as cli
from patron.config import get_settings
from patron.db import Database
from patron.models import Base
from tests.conftest import settings_for

# Every table the models know of; the migrations must create exactly these.
TABLES = set(Base.metadata.tables)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = Database(settings_for(db_url), pool=False)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def run_cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("PATRON_DATABASE_URL", db_url)
    get_settings.cache_clear()  # the CLI reads settings once per process
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    yield run
    get_settings.cache_clear()


def downgrade_to_base(database: Database) -> None:
    cfg = migrate.alembic_config(database.engine.url.render_as_string(hide_password=False))
    with database.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")


def user_tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_migrate_twice_changes_nothing(database, run_cli):
    head = migrate.head()
    assert migrate.current(database.engine) == head
    assert run_cli("migrate") == f"Schema is up to date ({head})."
    assert run_cli("migrate") == f"Schema is up to date ({head})."
    assert migrate.current(database.engine) == head
    assert user_tables(database) == TABLES


def test_migrate_from_empty_then_again(database, run_cli):
    head = migrate.head()
    downgrade_to_base(database)
    assert migrate.current(database.engine) is None
    assert user_tables(database) == set()

    assert run_cli("migrate") == f"Schema upgraded from empty to {head}."
    assert run_cli("migrate") == f"Schema is up to date ({head})."
    assert migrate.current(database.engine) == head
    assert user_tables(database) == TABLES
    with database.engine.connect() as conn:
        program = conn.execute(text("SELECT name, currency, point_value_minor, card_prefix FROM program")).all()
        tiers = conn.execute(text("SELECT code, name, threshold FROM tiers")).all()
    # Seeded once, not once per run.
    assert [tuple(r) for r in program] == [("Loyalty programme", "RUB", 100, "7800")]
    assert [tuple(r) for r in tiers] == [("member", "Member", 0)]


def test_downgrade_to_base_and_upgrade_to_head_with_data(database):
    from patron.access.principal import SYSTEM
    from patron.members import service as members
    from patron.members.schemas import ConsentsIn, MemberCreate

    def enrol(s):  # type: ignore[no-untyped-def]
        data = MemberCreate(
            first_name="A", last_name="B", phone="+79161234567", consents=ConsentsIn(program_rules=True)
        )
        return members.enrol(s, SYSTEM, data)

    database.write(enrol)
    downgrade_to_base(database)
    assert user_tables(database) == set()
    assert migrate.current(database.engine) is None

    migrate.upgrade(database.engine)
    assert migrate.current(database.engine) == migrate.head()
    assert user_tables(database) == TABLES
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM members")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM program")).scalar() == 1
    # The schema works again.
    assert database.write(enrol).phone == "+79161234567"

    migrate.upgrade(database.engine)  # and upgrading again is a no-op
    assert migrate.current(database.engine) == migrate.head()


def test_migrations_match_the_models(database):
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
