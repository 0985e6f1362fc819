"""Scheduled jobs at scale: expire-points, requalify-tiers and refresh-segments over the demo.

    .venv/bin/python benchmarks/jobs.py [--quick] [--members N] [--seed S] [--days D]

Starts a throwaway PostgreSQL, migrates it, fills it with `patron demo` at N members (default
1,000,000, about ten million ledger entries; --quick: 50,000) and vacuums it, as autovacuum would
soon after a load. Then it runs each job once through `patron.jobs.registry.run`, as the worker
and `patron jobs run` do, with an `as_of` D days after the demo's now (default 180), so that each
has real work: expiry takes the points earned 185 to 365 days before the demo's now, and the
tier and segment windows have moved half a year. It prints each job's time and what it did
(target: under 60 s each), then proves the ledger with `ledger verify`.

The machine's cores are shared by this script, PostgreSQL and whatever else runs: the figures
are pessimistic on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import pgserver  # noqa: E402

from benchmarks.common import SECRET, migrated  # noqa: E402
from patron import demo  # noqa: E402
from patron.access.principal import SYSTEM  # noqa: E402
from patron.cli import progress_bar  # noqa: E402
from patron.db import Database  # noqa: E402
from patron.jobs import registry  # noqa: E402
from patron.kit import clock  # noqa: E402
from patron.ledger.models import LedgerEntry, LotAllocation, PointLot  # noqa: E402
from patron.ledger.verify import verify  # noqa: E402
from patron.members.models import Member  # noqa: E402
from patron.transactions.models import Transaction, TransactionLine  # noqa: E402

JOBS = ("expire-points", "requalify-tiers", "refresh-segments")
TARGET_SECONDS = 60
# A server configured for a machine of this size rather than PostgreSQL's 128 MB defaults.
SERVER_SETTINGS = (
    "-c shared_buffers=1GB",
    "-c work_mem=32MB",
    "-c maintenance_work_mem=512MB",
    "-c max_wal_size=8GB",
    "-c checkpoint_timeout=30min",
)


def timed(label: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    print(f"{label}...", flush=True)
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.1f} s", flush=True)
    return out, seconds


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on a terminal; elsewhere (a log file) a line every 5% with the rate."""
    if sys.stderr.isatty():
        with progress_bar(description, total) as advance:
            yield advance
        return
    started = time.perf_counter()
    done = 0
    step = max(total // 20, 1)

    def advance(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if done // step != before // step or done == total:
            seconds = time.perf_counter() - started
            print(f"  {description}: {done:,}/{total:,} in {seconds:.0f} s ({done / seconds:,.0f}/s)", flush=True)

    yield advance


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({platform.machine()}), load average {load}"


def counts(db: Database) -> dict[str, int]:
    def read(s: Any) -> dict[str, int]:
        return {
            model.__tablename__: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Member, Transaction, TransactionLine, LedgerEntry, PointLot, LotAllocation)
        }

    return db.read(read)


def vacuum(url: str) -> None:
    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 members")
    parser.add_argument("--members", type=int, default=None, help="demo members (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=180, help="the jobs' as_of: days after the demo's now")
    parser.add_argument("--keep", action="store_true", help="leave the server and its database running, to study")
    args = parser.parse_args()
    members = args.members or (50_000 if args.quick else 1_000_000)

    print(f"machine: {machine()}", flush=True)
    print("starting a throwaway PostgreSQL server...", flush=True)
    server = pgserver.start(extra=SERVER_SETTINGS)
    try:
        u = make_url(server.admin_url)
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
            version = c.execute("SHOW server_version").fetchone()
        print(f"PostgreSQL {version[0] if version else '?'}: {' '.join(SERVER_SETTINGS)}", flush=True)
        url = server.url("bench")
        db = migrated(url)
        now = clock.now().replace(microsecond=0)
        with clock.frozen(now), progress(f"demo: {members:,} members with their history", members) as advance:
            started = time.perf_counter()
            result = demo.run(db, SYSTEM, count=members, seed=args.seed, secret=SECRET.encode(), on_progress=advance)
            demo_seconds = time.perf_counter() - started
        print(
            f"demo: {demo_seconds:.1f} s for {result.members:,} members, {result.purchases:,} purchases, "
            f"{result.ledger_entries:,} ledger entries ({result.ledger_entries / max(result.members, 1):.1f} a "
            f"member), tiers {', '.join(f'{name} {n:,}' for name, n in result.tiers)}",
            flush=True,
        )
        _, vacuum_seconds = timed("VACUUM ANALYZE", lambda: vacuum(url))
        for table, n in counts(db).items():
            print(f"  {table:<20} {n:>12,} rows", flush=True)
        with db.engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
        print(f"  database size        {size:>12}", flush=True)

        as_of = now + timedelta(days=args.days)
        print(f"jobs as of {as_of.isoformat()} ({args.days} days after the demo); machine: {machine()}", flush=True)
        figures: list[tuple[str, float | None, dict[str, Any] | None]] = []
        for name in JOBS:
            if name not in registry.JOBS:
                print(f"{name}: not registered in patron.jobs.registry.JOBS; skipped", flush=True)
                figures.append((name, None, None))
                continue
            out, seconds = timed(name, lambda name=name: registry.run(db, name, as_of))
            print(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in out.items()), flush=True)
            figures.append((name, seconds, out))

        (checked, mismatches), verify_seconds = timed("ledger verify", lambda: db.read(verify))
        print(f"ledger verify: {checked:,} accounts, {len(mismatches)} mismatches ({verify_seconds:.1f} s)", flush=True)
        print()
        print(f"summary: {members:,} members, {result.ledger_entries:,} ledger entries; {machine()}")
        print(f"  demo generation      {demo_seconds:8.1f} s")
        print(f"  VACUUM ANALYZE       {vacuum_seconds:8.1f} s")
        for name, seconds, _ in figures:
            if seconds is None:
                print(f"  {name:<20} missing")
            else:
                verdict = "ok" if seconds < TARGET_SECONDS else f"over the {TARGET_SECONDS} s target"
                print(f"  {name:<20} {seconds:8.1f} s  {verdict}")
        print(f"  ledger verify        {'passed' if not mismatches else 'FAILED'}")
        db.dispose()
        if args.keep:
            print(f"kept: {url} (data in {server.root}; stop with pg_ctl -D {server.root / 'data'} stop)")
        if mismatches:
            sys.exit(1)
    finally:
        if not args.keep:
            server.stop()


if __name__ == "__main__":
    main()
