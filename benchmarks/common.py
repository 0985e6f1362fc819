"""Shared pieces of the benchmark scripts: a throwaway PostgreSQL, bulk seeding, latency stats."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from patron import migrate
from patron.cards.models import Card
from patron.config import Settings
from patron.db import Database
from patron.kit.ids import new_id
from patron.kit.luhn import with_check_digit
from patron.ledger.models import PointAccount
from patron.members.models import Member

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402

SECRET = "benchmark-secret"


@contextmanager
def throwaway_postgres(dbname: str = "bench") -> Iterator[str]:
    print("starting a throwaway PostgreSQL server...", flush=True)
    server = pgserver.start(extra=("-c max_wal_size=4GB", "-c checkpoint_timeout=30min"))
    try:
        u = make_url(server.admin_url)
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {dbname}")  # type: ignore[arg-type]
        yield server.url(dbname)
    finally:
        server.stop()


def settings_for(url: str, **kw: object) -> Settings:
    return Settings(database_url=url, secret=SECRET, log_level="WARNING", **kw)  # type: ignore[arg-type]


def migrated(url: str) -> Database:
    db = Database(settings_for(url))
    migrate.upgrade(db.engine)
    return db


def seed_members(db: Database, count: int, *, batch: int = 10_000, seed: int = 7) -> list[str]:
    """`count` members, each with an account and an active loyalty card; returns the card numbers."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    cards: list[str] = []
    done = 0
    started = time.perf_counter()
    while done < count:
        n = min(batch, count - done)
        members, accounts, card_rows = [], [], []
        for i in range(done, done + n):
            mid = new_id()
            members.append(
                {
                    "id": mid,
                    "number": with_check_digit(f"2{i:08d}"),
                    "first_name": "Bench",
                    "last_name": f"M{i}",
                    "email": f"m{i}@bench.example",
                    "phone": f"+7900{i:07d}",
                    "language": "ru",
                    "status": "active",
                    "channel": "import",
                    "tier_code": "member",
                    "referral_code": f"B{i:09d}",
                    "attributes": {},
                    "rules_version": "1",
                    "rules_accepted_at": now,
                    "marketing_email": False,
                    "marketing_sms": False,
                    "marketing_push": False,
                    "enrolled_at": now - timedelta(days=rng.randint(0, 700)),
                    "updated_at": now,
                }
            )
            accounts.append(
                {
                    "member_id": mid,
                    "available": 0,
                    "pending": 0,
                    "lifetime_earned": 0,
                    "redeemed": 0,
                    "expired": 0,
                    "updated_at": now,
                }
            )
            number = with_check_digit(f"78{i:013d}")
            cards.append(number)
            card_rows.append(
                {
                    "id": new_id(),
                    "kind": "loyalty",
                    "number": number,
                    "status": "active",
                    "member_id": mid,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with db.session(write=True) as s:
            s.execute(insert(Member), members)
            s.execute(insert(PointAccount), accounts)
            s.execute(insert(Card), card_rows)
        done += n
        rate = done / (time.perf_counter() - started)
        print(f"\r  seeded {done:,}/{count:,} members ({rate:,.0f}/s)", end="", flush=True)
    print(flush=True)
    return cards


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    q = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


def report(label: str, count: int, seconds: float, latencies_ms: Sequence[float], errors: int = 0) -> float:
    p = percentiles(latencies_ms)
    rate = count / seconds if seconds else 0.0
    print(
        f"{label:<28} {count:>7,} ops in {seconds:6.1f} s = {rate:8.1f}/s   "
        f"p50 {p['p50']:6.1f} ms  p95 {p['p95']:6.1f} ms  p99 {p['p99']:6.1f} ms  errors {errors}",
        flush=True,
    )
    return rate


def start_server(url: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PATRON_DATABASE_URL": url, "PATRON_SECRET": SECRET, "PATRON_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("patron")), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
