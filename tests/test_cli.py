"""The `patron` command, run in-process against each test database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from patron import cli as cli_module
from patron import migrate
from patron.access import service as access
from patron.access.roles import Role
from patron.app import create_app
from patron.cli import app
from patron.config import DEFAULT_DATABASE_URL, Settings
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


NOT_MIGRATED = "has no Patron schema: run `patron migrate`"
# Every command that needs the schema, with the arguments it needs to get that far.
COMMANDS = [
    ["keys", "create", "--role", "admin"],
    ["keys", "list"],
    ["keys", "revoke", "ptr_abc"],
    ["users", "create", "--email", "a@example.com", "--role", "agent", "--password", "long enough"],
    ["import", "members", "{csv}"],
    ["export", "members"],
    ["jobs", "run", "expire-points"],
    ["ledger", "verify"],
    ["demo", "--members", "3"],
    ["serve", "--port", "1"],
    ["worker", "--once"],
]


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_sqlite_file_is_one_line_and_no_file_is_made(tmp_path, command):
    path = tmp_path / "patron.db"
    csv = tmp_path / "members.csv"
    csv.write_text("first_name,last_name,email\nA,One,a@example.com\n", encoding="utf-8")
    url = f"sqlite:///{path}"
    args = [a.replace("{csv}", str(csv)) for a in command]
    result = CliRunner().invoke(app, args, env={"PATRON_DATABASE_URL": url, "PATRON_SECRET": ""})
    assert result.exit_code == 2
    assert one_line(result) == f"error: the database at {url} {NOT_MIGRATED}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["members.csv"]  # no patron.db, no .secret


def _downgrade(db: Database, revision: str) -> None:
    config = migrate.alembic_config(db.engine.url.render_as_string(hide_password=False))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_a_database_without_the_schema_or_behind_it_says_so(cli, db, db_url):
    where = f"the database at {make_url(db_url).render_as_string(hide_password=True)}"
    head = migrate.head()
    previous = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision(head).down_revision
    assert isinstance(previous, str)

    _downgrade(db, previous)
    older = cli("keys", "list", code=2)
    assert one_line(older) == (
        f"error: {where} has schema {previous}, older than this Patron's {head}: run `patron migrate`"
    )

    _downgrade(db, "base")
    for args in (["keys", "create", "--role", "admin"], ["ledger", "verify"], ["worker", "--once"]):
        assert one_line(cli(*args, code=2)) == f"error: {where} {NOT_MIGRATED}"

    assert cli("migrate").stdout.strip() == f"Schema upgraded from empty to {head}."
    assert "ptr_" in cli("keys", "create", "--role", "admin").stdout

    db.write(lambda s: s.execute(text("UPDATE alembic_version SET version_num = '9999_future'")))
    future = cli("keys", "list", code=2)
    assert one_line(future) == (
        f"error: {where} has schema 9999_future, which this version of Patron does not know (a newer Patron's?)"
    )


def test_a_database_that_does_not_answer_is_one_line_without_the_password():
    url = "postgresql+psycopg://patron:s3cret-pw@127.0.0.1:1/patron"
    runner = CliRunner()
    for args in (["migrate"], ["keys", "list"]):
        result = runner.invoke(app, args, env={"PATRON_DATABASE_URL": url, "PATRON_SECRET": TEST_SECRET})
        assert result.exit_code == 2, result.output
        line = one_line(result)
        assert line.startswith(
            "error: cannot open the database at postgresql+psycopg://patron:***@127.0.0.1:1/patron: "
        )
        assert "s3cret-pw" not in result.output


def test_migrate_makes_the_sqlite_file_and_its_directory(tmp_path):
    path = tmp_path / "new" / "dir" / "patron.db"
    result = CliRunner().invoke(app, ["migrate"], env={"PATRON_DATABASE_URL": f"sqlite:///{path}"})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Schema upgraded from empty to {migrate.head()}."
    assert path.exists()


def test_import_exits_1_when_any_row_is_refused(cli, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("first_name,last_name,email\nA,One,a@example.com\nB,Two,b@example.com\n", encoding="utf-8")
    assert "Imported 2 members, refused 0." in cli("import", "members", str(good)).stdout

    mixed = tmp_path / "mixed.csv"
    mixed.write_text("first_name,last_name,email\nC,Three,c@example.com\nD,Four,d@@example.com\n", encoding="utf-8")
    result = cli("import", "members", str(mixed), code=1)
    assert "Imported 1 members, refused 1." in result.stdout
    assert "line 3: bad email" in result.stdout


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*prefix, name))
        else:
            yield (*prefix, name)


def test_help_shows_flags_without_a_value():
    runner = CliRunner()
    names = list(_commands(typer.main.get_command(app)))
    assert ("demo",) in names and ("worker",) in names and ("users", "create") in names
    for name in names:
        result = runner.invoke(app, [*name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, name
        assert "--help  " in result.output
    demo = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    assert "  --if-empty  " in demo
    assert "  --once  " in runner.invoke(app, ["worker", "--help"], env={"COLUMNS": "200"}).output
    users = runner.invoke(app, ["users", "create", "--help"], env={"COLUMNS": "200"}).output
    assert "--password <str>" in users and "Asked for (hidden, twice) when absent" in users
    assert "--password <str>  [required]" not in users


def test_users_create_asks_for_the_password_when_it_is_not_given(db, db_url):
    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    args = ["users", "create", "--email", "boris@example.com", "--role", "cashier"]
    result = runner.invoke(app, args, env=env, input="a long password\na long password\n")
    assert result.exit_code == 0, result.output
    assert "Password: " in result.output and "Repeat for confirmation: " in result.output
    assert "a long password" not in result.output  # hidden
    assert "Created cashier user boris@example.com." in result.output
    user = db.read(lambda s: access.verify_user(s, "boris@example.com", "a long password"))
    assert user is not None and user.role == "cashier"


def test_the_commands_printed_name_a_patron_that_runs_from_here(tmp_path, monkeypatch):
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "patron"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(exe), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli_module.invoked_as() == ".venv/bin/patron"  # a checkout without the virtualenv activated
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert cli_module.invoked_as() == "patron"  # source .venv/bin/activate
    monkeypatch.chdir(bin_dir.parent)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli_module.invoked_as() == "bin/patron"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli_module.invoked_as() == str(exe.resolve())
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/patron/cli.py"])
    assert cli_module.invoked_as() == "patron"


def test_scripts_start_uses_the_default_database_of_every_command(monkeypatch):
    monkeypatch.delenv("PATRON_DATABASE_URL", raising=False)
    start = (Path(__file__).resolve().parent.parent / "scripts" / "start").read_text(encoding="utf-8")
    assert "PATRON_DATABASE_URL=" not in start and ".patron/patron.db\n" not in start
    assert Settings().database_url == DEFAULT_DATABASE_URL == "sqlite:///patron.db"
    assert ".venv/bin/patron demo --if-empty --serving " in start
