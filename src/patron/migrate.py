"""Schema upgrades through Alembic, from the installed package (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    rev = script.get_current_head()
    assert rev is not None
    return rev


class NotMigrated(RuntimeError):
    """The database cannot be used as it is; the message says why and what to run."""


def _where(engine: Engine) -> str:
    return f"the database at {engine.url.render_as_string(hide_password=True)}"


def reachable_revision(engine: Engine) -> str | None:
    """current(engine), or NotMigrated with the driver's reason when the database cannot be opened."""
    try:
        return current(engine)
    except OperationalError as exc:
        text = str(exc.orig if exc.orig is not None else exc).strip()
        reason = text.splitlines()[0] if text else "no answer"
        raise NotMigrated(f"cannot open {_where(engine)}: {reason}") from None


def require_head(engine: Engine) -> None:
    """Raise NotMigrated unless the database answers and its schema is this version's head."""
    where = _where(engine)
    revision = reachable_revision(engine)
    latest = head()
    if revision == latest:
        return
    if revision is None:
        raise NotMigrated(f"{where} has no Patron schema: run `patron migrate`")
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}
    if revision in known:
        raise NotMigrated(f"{where} has schema {revision}, older than this Patron's {latest}: run `patron migrate`")
    raise NotMigrated(f"{where} has schema {revision}, which this version of Patron does not know (a newer Patron's?)")
