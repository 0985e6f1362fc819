"""Back-office dashboard benchmark: the figures for the last 7, 30 and 365 days.

    .venv/bin/python benchmarks/dashboard.py [--quick] [--members N] [--url URL]

Starts a throwaway PostgreSQL, fills it with `patron demo`'s generator (default 1,000,000
members with two years of history: about 9 ledger entries and 6 purchases each; --quick: 100,000),
vacuums and analyzes it as autovacuum would (index-only scans need the visibility map), waits
until the generated rows are older than the rollups' settle time, then for each range ending today
measures
  live:   every figure summed from the source tables (what the dashboard did before its rollups);
  cold:   the dashboard with its rollups emptied (it fills the closed days of the range);
  warm:   the same call, twice (closed days from the rollups, today from the source tables);
and checks that they all give the same figures. --url reuses a database the demo already filled.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import migrated, throwaway_postgres  # noqa: E402
from patron import demo  # noqa: E402
from patron.access.principal import SYSTEM  # noqa: E402
from patron.analytics import rollups, service  # noqa: E402
from patron.analytics.models import EnrolmentDay, LedgerDay, PurchaseDay, RollupCheck  # noqa: E402
from patron.db import Database  # noqa: E402
from patron.kit import clock  # noqa: E402
from patron.ledger.models import LedgerEntry  # noqa: E402
from patron.members.models import Member  # noqa: E402
from patron.program import service as program_service  # noqa: E402
from patron.transactions.models import Transaction  # noqa: E402

T = TypeVar("T")
RANGES = (7, 30, 365)


@contextmanager
def database(url: str | None) -> Iterator[tuple[str, bool]]:
    if url:
        yield url, False
    else:
        with throwaway_postgres("dashboard") as fresh:
            yield fresh, True


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def generate(db: Database, members: int) -> None:
    print(f"generating {members:,} demo members with their history (patron demo)...", flush=True)
    seconds, result = timed(lambda: demo.run(db, SYSTEM, count=members, secret=db.settings.secret_key()))
    print(
        f"  {result.members:,} members, {result.ledger_entries:,} ledger entries, {result.purchases:,} purchases "
        f"in {seconds:.0f} s",
        flush=True,
    )


def vacuum(db: Database) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        seconds, _ = timed(lambda: conn.execute(text("VACUUM ANALYZE")))
    print(f"  VACUUM ANALYZE in {seconds:.0f} s", flush=True)


def wait_until_settled(db: Database) -> None:
    """The demo stamps its rows with ids of the minutes it ran in, not of their history's times:
    until those are older than the rollups' settle time, a request would take them for rows that
    arrived late and refill the rollups (as it would after a large import)."""

    def newest(s: Session) -> datetime:
        keys: list[uuid.UUID | None] = [
            s.scalar(select(k).order_by(k.desc()).limit(1)) for k in (LedgerEntry.id, Member.id, Transaction.id)
        ]
        return max(rollups.time_of(k) for k in keys if k is not None)

    wait = (db.read(newest) + rollups.SETTLE - datetime.now(UTC)).total_seconds()
    if wait > 0:
        print(f"waiting {wait:.0f} s until the generated rows are older than the settle time...", flush=True)
        time.sleep(wait + 1)


def summary(d: service.Dashboard) -> tuple[object, ...]:
    return (
        d.members,
        d.new_members,
        d.active_members,
        d.points_issued,
        d.points_redeemed,
        d.points_expired,
        d.points_reversed,
        d.points_adjusted_down,
        d.outstanding,
        [(b.start, b.new_members, b.issued, b.redeemed, b.expired) for b in d.buckets],
        d.tiers,
    )


def clear_rollups(db: Database) -> None:
    def run(s: Session) -> None:
        for model in (LedgerDay, EnrolmentDay, PurchaseDay, RollupCheck):
            s.execute(delete(model))

    db.write(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 members")
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--url", help="a database the demo already filled (nothing is generated)")
    args = parser.parse_args()
    members = args.members or (100_000 if args.quick else 1_000_000)
    with database(args.url) as (url, fresh):
        db = migrated(url)
        if fresh:
            generate(db, members)
        vacuum(db)
        wait_until_settled(db)
        counts = db.read(
            lambda s: [s.scalar(select(func.count()).select_from(m)) for m in (Member, LedgerEntry, Transaction)]
        )
        print("members {:,}, ledger entries {:,}, purchases {:,}".format(*counts), flush=True)
        tz = db.read(lambda s: program_service.zone(program_service.get(s)))
        today = clock.now().astimezone(tz).date()
        print(f"{'range':>9} {'live':>8} {'cold':>8} {'warm':>8} {'warm':>8}   same figures", flush=True)
        for days in RANGES:
            start = today - timedelta(days=days - 1)

            def call(rollup: bool = True, start: date = start) -> service.Dashboard:
                return db.read(lambda s: service.dashboard(s, start, today, rollup=rollup))

            live_s, live = timed(lambda: call(rollup=False))
            clear_rollups(db)
            cold_s, cold = timed(call)
            warm_s, warm = timed(call)
            again_s, again = timed(call)
            same = summary(live) == summary(cold) == summary(warm) == summary(again)
            print(
                f"{days:>4} days {live_s:>7.3f}s {cold_s:>7.3f}s {warm_s:>7.3f}s {again_s:>7.3f}s   {same}",
                flush=True,
            )
            if not same:
                raise SystemExit("the rollups gave other figures than the source tables")
        db.dispose()


if __name__ == "__main__":
    main()
