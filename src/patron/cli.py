"""The `patron` command. Each command parses its options, opens one transaction and calls a service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.config import ConfigError, get_settings
from patron.db import Database
from patron.errors import PatronError

app = typer.Typer(help="Patron loyalty management.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="API keys for POS systems, websites and apps.", no_args_is_help=True)
users_app = typer.Typer(help="Staff accounts for the web back office.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")

console = Console()
err = Console(stderr=True)

CLI_ACTOR = Actor(kind="system", id=None, name="cli")


def database() -> Database:
    return Database(get_settings(), pool=False)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run again)."""
    from patron import migrate as migrations

    db = database()
    before = migrations.current(db.engine)
    migrations.upgrade(db.engine)
    after = migrations.current(db.engine)
    if before == after:
        console.print(f"Schema is up to date ({after}).")
    else:
        console.print(f"Schema upgraded from {before or 'empty'} to {after}.")


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="admin, marketer, agent, cashier or analyst")],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the till or the app it is for")] = None,
    location: Annotated[str | None, typer.Option(help="Restrict the key to one location code")] = None,
) -> None:
    """Create an API key; the key is the last line printed and is never shown again."""
    db = database()
    key, token = db.write(lambda s: access.create_key(s, CLI_ACTOR, role=role, name=name, location=location))
    console.print(f"Created {key.role} key {key.prefix}… ({key.name}). Store it now; it is not shown again:")
    print(token)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (prefixes only)."""
    db = database()
    for key in db.read(access.list_keys):
        state = "revoked" if key.revoked_at else "active"
        console.print(f"{key.prefix}…  {key.role:<9} {state:<8} {key.location or '-':<10} {key.name}")


@keys_app.command("revoke")
def keys_revoke(prefix: str) -> None:
    """Revoke a key by its prefix (as `keys list` shows it) or id."""
    db = database()
    db.write(lambda s: access.revoke_key(s, CLI_ACTOR, prefix.rstrip("…")))
    console.print("Revoked.")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    role: Annotated[Role, typer.Option()],
    name: Annotated[str | None, typer.Option()] = None,
    location: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a staff account for the web back office."""
    db = database()
    user = db.write(
        lambda s: access.create_user(
            s, CLI_ACTOR, email=email, password=password, role=role, name=name, location=location
        )
    )
    console.print(f"Created {user.role} user {user.email}.")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Processes; more than 1 needs PostgreSQL")] = 1,
) -> None:
    """Serve the API, its docs and the web UI."""
    import uvicorn

    settings = get_settings()
    settings.secret_key()  # fail now, clearly, rather than at the first request
    console.print(f"Patron on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "patron.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=settings.log_level.lower(),
        http="httptools",
        loop="uvloop",
    )


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(2)
    except PatronError as exc:
        err.print(f"[red]refused:[/red] {exc.detail}")
        sys.exit(1)


def _unused(_: Path) -> None:  # keeps Path imported for commands added below
    pass
