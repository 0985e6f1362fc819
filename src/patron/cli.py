"""The `patron` command. Each command parses its options and calls services in a transaction;
long work (import, demo) commits batch by batch and shows a progress bar on stderr."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.config import ConfigError, Settings
from patron.db import Database
from patron.errors import PatronError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Plain help: Typer's rich panels print a bogus `<bool>` type beside every flag, even --help.
PLAIN = None
app = typer.Typer(help="Patron loyalty management.", no_args_is_help=True, rich_markup_mode=PLAIN, add_completion=False)
keys_app = typer.Typer(
    help="API keys for POS systems, websites and apps.", no_args_is_help=True, rich_markup_mode=PLAIN
)
users_app = typer.Typer(help="Staff accounts for the web back office.", no_args_is_help=True, rich_markup_mode=PLAIN)
app.add_typer(keys_app, name="keys")
# `import` is a Python keyword, hence the _app names.
import_app = typer.Typer(help="Load members from CSV files.", no_args_is_help=True, rich_markup_mode=PLAIN)
export_app = typer.Typer(help="Write members out as CSV.", no_args_is_help=True, rich_markup_mode=PLAIN)
app.add_typer(users_app, name="users")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
jobs_app = typer.Typer(help="Scheduled jobs, run by hand.", no_args_is_help=True, rich_markup_mode=PLAIN)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True, rich_markup_mode=PLAIN)
app.add_typer(jobs_app, name="jobs")
app.add_typer(ledger_app, name="ledger")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

CLI_ACTOR = Actor(kind="system", id=None, name="cli")


def database(*, pool: bool = False, migrated: bool = True) -> Database:
    """The database of PATRON_DATABASE_URL; unless `migrated` is False, it must be at the schema's
    head, else the command stops here with one line (exit code 2) and no SQLite file is created."""
    from patron import migrate as migrations

    # Settings read afresh, not the cached get_settings(): one command, one environment.
    settings = Settings()
    path = settings.sqlite_path()
    if migrated and path is not None and not path.exists():
        fail(f"the database at {settings.database_url} has no Patron schema: run `patron migrate`", 2)
    db = Database(settings, pool=pool)
    if migrated:
        try:
            migrations.require_head(db.engine)
        except migrations.NotMigrated as exc:
            db.dispose()
            fail(str(exc), 2)
    return db


def fail(message: str, code: int = 1) -> NoReturn:
    err.print("[red]error:[/red]", escape(message), highlight=False)
    raise typer.Exit(code)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr (stdout may carry data); yields the function that advances it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
        progress.update(task, total=progress.tasks[0].completed)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run again)."""
    from patron import migrate as migrations

    db = database(migrated=False)
    path = db.settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before = migrations.reachable_revision(db.engine)
    except migrations.NotMigrated as exc:
        fail(str(exc), 2)
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
    role: Annotated[Role, typer.Option()],
    password: Annotated[
        str | None,
        typer.Option(help="Asked for (hidden, twice) when absent; given here it stays in the shell's history"),
    ] = None,
    name: Annotated[str | None, typer.Option()] = None,
    location: Annotated[str | None, typer.Option(help="Restrict the account to one location code")] = None,
) -> None:
    """Create a staff account for the web back office."""
    db = database()
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = db.write(
        lambda s: access.create_user(
            s, CLI_ACTOR, email=email, password=password, role=role, name=name, location=location
        )
    )
    console.print(f"Created {user.role} user {user.email}.")


@import_app.command("members")
def import_members(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header line")],
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Write the refused rows here with their line and reason; fix and import again"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction")] = 2000,
) -> None:
    """Import members from CSV, keeping the good rows and reporting every refused one (exit code 1
    when any row was refused).

    Columns: first_name, last_name, email, phone, birth_date (YYYY-MM-DD), language, card,
    marketing_email, marketing_sms, marketing_push (true/false), attribute.NAME for custom
    attributes, and the extra columns `patron export members` writes. Consent to the programme
    rules is recorded as given through the import.
    """
    from patron.members import importing

    db = database(pool=True)
    shown = 20
    with ExitStack() as stack:
        source = stack.enter_context(file.open(encoding="utf-8-sig", newline=""))
        try:
            csvfile = importing.MemberCsv(source)
        except PatronError as exc:
            fail(f"{file}: {exc.detail}")
        except UnicodeDecodeError:
            fail(f"{file} is not UTF-8 text; save it as CSV UTF-8 and import it again")
        on_refused = None
        if errors is not None:
            on_refused = importing.RefusalWriter(
                stack.enter_context(errors.open("w", encoding="utf-8", newline="")), csvfile
            )
        advance = stack.enter_context(progress_bar("Importing members", max(count_lines(file) - 1, 0)))
        try:
            report = importing.import_members(
                db, CLI_ACTOR, csvfile, batch_size=batch_size, on_progress=advance, on_refused=on_refused
            )
        except UnicodeDecodeError:
            fail(f"stopped: {file} is not UTF-8 text past some point; the rows before it were imported")
    console.print(f"Imported {report.imported} members, refused {report.refused}.", highlight=False)
    for refusal in report.refusals[:shown]:
        console.print(f"  line {refusal.line}: {refusal.reason}", markup=False, highlight=False)
    if report.refused > shown:
        where = f"all of them are in {errors}" if errors else "write them all with --errors FILE"
        console.print(f"  … and {report.refused - shown} more; {where}.", highlight=False)
    elif report.refused and errors:
        console.print(f"  The refused rows are in {errors}.", highlight=False)
    if report.with_points:
        console.print(
            f"Note: {report.with_points} rows have points_available; balances are not imported from CSV.",
            highlight=False,
        )
    if report.refused:
        raise typer.Exit(1)  # the good rows are kept; cron and CI still see that some were not


@export_app.command("members")
def export_members(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The CSV file; standard output if absent")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows read at a time")] = 2000,
) -> None:
    """Export members as CSV, in the format `patron import members` reads back."""
    from patron.members import exporting

    db = database(pool=True)

    def run(session: Session) -> int:
        with ExitStack() as stack:
            out: TextIO = stack.enter_context(output.open("w", encoding="utf-8", newline="")) if output else sys.stdout
            advance = stack.enter_context(progress_bar("Exporting members", exporting.count(session)))
            return exporting.write_members(session, out, batch_size=batch_size, on_progress=advance)

    written = db.read(run)
    err.print(f"Exported {written} members" + (f" to {output}." if output else "."), highlight=False)


@app.command()
def demo(
    members: Annotated[int, typer.Option(min=1, max=10_000_000, help="How many demo members")] = 200,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Do nothing when the database has members")] = False,
    seed: Annotated[int, typer.Option(help="The same seed gives the same members")] = 1,
    url: Annotated[str, typer.Option(help="Where Patron will be served, for the addresses printed")] = (
        "http://127.0.0.1:8000"
    ),
    serving: Annotated[
        bool, typer.Option("--serving", help="The server starts right after (scripts/start): no hint to start it")
    ] = False,
) -> None:
    """Fill an empty database with a demo programme: a chain of car service centres."""
    from patron import demo as demo_data

    url = url.rstrip("/")

    db = database(pool=True)
    existing = db.read(demo_data.member_count)
    if existing:
        if not if_empty:
            fail(f"the database already has {existing} members; the demo fills an empty programme only")
        console.print(f"The database already has {existing} members; no demo data added.", highlight=False)
        _next_steps(db, url, serving)
        _sample(db.read(demo_data.sample_member), url)
        console.print(
            f"An admin API key for the back office or curl:  export KEY=$({invoked_as()} keys create --role admin"
            " | tail -1)",
            markup=False,
            highlight=False,
        )
        return
    secret = db.settings.secret_key()  # the bank cards are hashed with it; fail before any work
    with progress_bar("Creating demo members", members) as advance:
        result = demo_data.run(db, CLI_ACTOR, count=members, seed=seed, secret=secret, on_progress=advance)
    console.print(
        f"Demo programme {demo_data.PROGRAM_NAME!r} is ready: {result.members} members, {result.cards} loyalty "
        f"cards ({result.blocked_cards} blocked, {result.replaced_cards} replaced), {result.bank_cards} linked "
        f"bank cards, {result.blocked_members} blocked members.",
        highlight=False,
    )
    console.print(
        f"History of {result.history_members} members: {result.purchases} purchases, {result.returns} returns, "
        f"{result.surveys} surveys answered; {result.points_issued} points issued ({result.points_earned} on "
        f"purchases, {result.points_bonus} bonuses), {result.points_redeemed} redeemed, {result.points_reversed} "
        f"taken back by returns, {result.points_expired} expired.",
        highlight=False,
    )
    console.print("Tiers: " + ", ".join(f"{name} {n}" for name, n in result.tiers) + ".", highlight=False)
    if result.history_members < result.members:
        console.print(f"The other {result.members - result.history_members} members have no history.", highlight=False)
    console.print("Locations:", highlight=False)
    for loc in result.locations:
        console.print(f"  {loc.code}  {loc.name}, {loc.address}", highlight=False)
    _next_steps(db, url, serving)
    _sample(result.sample, url)
    console.print(f"Cashier API key for {result.cashier_location} (shown once):")
    print(result.cashier_key)
    console.print("Admin API key (shown once; export KEY=<it> for the example above):")
    print(result.admin_key)


def invoked_as() -> str:
    """How to run this `patron` again from the working directory: bare when PATH finds this one,
    else its path (`.venv/bin/patron` in a checkout whose virtualenv is not activated)."""
    exe = Path(sys.argv[0])
    if exe.name != "patron":  # python -m patron.cli, or a test runner
        return "patron"
    found = shutil.which("patron")
    if found is not None and Path(found).resolve() == exe.resolve():
        return "patron"
    try:
        return str(exe.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(exe.resolve())


def _sample(sample: tuple[str, str, str] | None, url: str) -> None:
    if sample is None:
        return
    name, phone, card = sample
    console.print(f"Try it with {name} (phone {phone}, card {card}):", highlight=False)
    for query in (f"phone={phone.replace('+', '%2B')}", f"card={card}"):
        console.print(
            f'  curl -H "Authorization: Bearer $KEY" "{url}/v1/identify?{query}"', markup=False, highlight=False
        )


def _next_steps(db: Database, url: str, serving: bool) -> None:
    from patron import demo as demo_data

    if serving:
        console.print("The server starts now:", highlight=False)
    else:
        console.print(f"Start the server:  {invoked_as()} serve", highlight=False)
    console.print(f"  Back office: {url}/admin", highlight=False)
    console.print(
        f"    sign in as {demo_data.STAFF_USERS[0][1]} / {demo_data.STAFF_PASSWORD} "
        f"(or {', '.join(email for _, email in demo_data.STAFF_USERS[1:])}, same password)",
        highlight=False,
    )
    console.print(f"  Till (POS):    {url}/pos (staff sign-in, e.g. cashier@demo.patron)", highlight=False)
    member_email = db.read(demo_data.portal_member)
    if member_email:
        console.print(f"  Member portal: {url}/portal", highlight=False)
        console.print(
            f"    sign in as {member_email}; without PATRON_SMTP_URL the one-time code arrives in the "
            f"development mailbox, {url}/admin/mailbox",
            highlight=False,
        )
    console.print(f"  Patron:    {url}", highlight=False)
    console.print(f"  API docs:  {url}/docs", highlight=False)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="release-pending, expire-points, ...")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Act as if it were this RFC 3339 instant")] = None,
) -> None:
    """Run one scheduled job now."""
    from datetime import datetime

    from patron.audit import service as audit
    from patron.jobs import registry
    from patron.kit import clock

    if name not in registry.JOBS:
        fail(f"no job named {name!r}; jobs: {', '.join(sorted(registry.JOBS))}")
    when = clock.now()
    if as_of is not None:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            fail(f"--as-of {as_of!r} is not an RFC 3339 time such as 2026-12-31T23:59:59+03:00")
        if when.tzinfo is None:
            fail("--as-of needs an offset, for example 2026-12-31T23:59:59+03:00")
    db = database(pool=True)
    with progress_bar(f"{name} as of {when.isoformat()}", None) as advance:
        result = registry.run_by_hand(db, name, when, advance)
    db.write(lambda s: audit.record(s, CLI_ACTOR, "job.run", "job", name, {"as_of": when.isoformat(), **result}))
    console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in result.items()), highlight=False)


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Prove that every cached balance equals the sum of its ledger entries and its lots."""
    from patron.ledger.verify import verify

    db = database()
    checked, mismatches = db.read(verify)
    for m in mismatches:
        err.print(f"  member {m.member_id}: {m.check}: cached {m.cached}, entries say {m.actual}", highlight=False)
    if mismatches:
        fail(f"{len(mismatches)} mismatch(es) in {checked} accounts")
    console.print(f"Ledger verified: {checked} accounts, every balance equals its entries.", highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Processes; more than 1 needs PostgreSQL")] = 1,
) -> None:
    """Serve the API, its docs and the web UI."""
    import uvicorn

    database().dispose()  # a database without the schema stops here, in one line
    settings = Settings()
    settings.secret_key()  # fail now, clearly, rather than at the first request
    console.print(f"Patron on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "patron.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=settings.log_level.lower(),
        http="httptools",
        loop="uvloop",
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run whatever is due now, then exit (cron, tests)")] = False,
) -> None:
    """Run the scheduled jobs on their timetable (PATRON_SCHEDULE); safe as several replicas.

    Stops between jobs on SIGTERM or Ctrl-C; a second signal stops at once."""
    import signal
    import threading

    from patron import logs
    from patron.jobs import registry
    from patron.jobs import worker as jobs_worker

    db = database(pool=True)
    settings = db.settings
    logs.configure(settings.log_level)
    table = jobs_worker.schedules(settings.schedule)
    name = registry.this_process()
    if once:
        ran = jobs_worker.run_due(db, table, worker=name)
        for r in ran:
            outcome = f"failed: {r.error}" if r.result is None else ", ".join(f"{k} {v}" for k, v in r.result.items())
            console.print(f"{r.job} (slot {r.slot}): {outcome}", highlight=False, markup=False)
        if not ran:
            console.print("Nothing due.")
        if any(r.result is None for r in ran):
            raise typer.Exit(1)
        return
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        err.print(f"{signal.Signals(signum).name}: stopping after the job at work (again to stop now)")
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.print("Worker started: " + "; ".join(f"{n} {s.text}" for n, s in table.items()), highlight=False)
    jobs_worker.serve(db, table, stop=stop, worker=name, poll_seconds=settings.worker_poll_seconds)
    console.print("Worker stopped.")


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(2)
    except PatronError as exc:
        err.print(f"[red]refused:[/red] {exc.detail}")
        sys.exit(1)


if __name__ == "__main__":
    main()
