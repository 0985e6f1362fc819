"""The `patron` command, run in-process against each test database."""

from __future__ import annotations

import pytest
from alembic import command
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from patron import migrate
from patron.access import service as access
from patron.access.roles import Role
from patron.app import create_app
from patron.cli import app
from patron.db import Database
from tests.conftest import TEST_SECRET, settings_for


@pytest.fixture
def cli(db_url):
    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}

    def invoke(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_keys_create_prints_the_key_last_and_it_authenticates(cli, db, settings):
    result = cli("keys", "create", "--role", "cashier", "--name", "till 1", "--location", "MSK-01")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("ptr_")
    actor = db.read(lambda s: access.authenticate_key(s, key))
    assert actor is not None
    assert (actor.role, actor.name, actor.location) == (Role.CASHIER, "till 1", "MSK-01")

    with TestClient(create_app(settings, db)) as client:
        assert client.get("/v1/program", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/v1/program", headers={"Authorization": "Bearer ptr_nope"}).status_code == 401

    listed = cli("keys", "list").stdout
    assert key[:12] in listed and "cashier" in listed and "active" in listed

    cli("keys", "revoke", key[:12] + "…")
    assert db.read(lambda s: access.authenticate_key(s, key)) is None
    assert "revoked" in cli("keys", "list").stdout


def test_users_create(cli, db):
    result = cli("users", "create", "--email", "Anna@Example.com", "--password", "long enough", "--role", "agent")
    assert "Created agent user anna@example.com." in result.stdout
    user = db.read(lambda s: access.verify_user(s, "anna@example.com", "long enough"))
    assert user is not None and user.role == "agent"

    again = cli(
        "users", "create", "--email", "anna@example.com", "--password", "long enough", "--role", "agent", code=1
    )
    assert again.exception is not None


def test_migrate_is_idempotent(cli, db):
    def to_empty() -> None:
        config = migrate.alembic_config(db.engine.url.render_as_string(hide_password=False))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")

    to_empty()
    assert migrate.current(db.engine) is None
    first = cli("migrate").stdout
    assert f"Schema upgraded from empty to {migrate.head()}." in first
    assert cli("migrate").stdout.strip() == f"Schema is up to date ({migrate.head()})."
    assert migrate.current(db.engine) == migrate.head()


def test_unknown_role_is_refused(cli):
    result = cli("keys", "create", "--role", "owner", code=2)
    assert "owner" in result.output


def test_settings_are_read_for_each_command(tmp_path):
    # get_settings() is cached for the server; the CLI reads the environment afresh each time.
    runner = CliRunner()
    for name in ("one", "two"):
        url = f"sqlite:///{tmp_path / name}.db"
        result = runner.invoke(app, ["migrate"], env={"PATRON_DATABASE_URL": url, "PATRON_SECRET": TEST_SECRET})
        assert result.exit_code == 0, result.output
        database = Database(settings_for(url))
        assert migrate.current(database.engine) == migrate.head()
        database.dispose()
