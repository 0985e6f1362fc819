"""POS transaction benchmark: identify by card + earn + answer, direct and through HTTP.

    .venv/bin/python benchmarks/pos.py [--quick] [--members N] [--workers W]

Starts a throwaway PostgreSQL with N members and cards (default 100,000), then measures
  (a) direct: the earn operation through the service layer in-process, same concurrency, no HTTP;
  (b) POST /v1/transactions over HTTP with concurrent clients (closed loop, peak throughput);
  (c) a steady 200 requests/s for 30 s (open loop: latency counted from the scheduled send time).
The last line is `ratio http/direct = X.XX` (peak HTTP throughput over direct throughput).
The load generator runs on the same machine and shares its cores with the server and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import migrated, report, seed_members, start_server, throwaway_postgres  # noqa: E402
from patron.access import service as access  # noqa: E402
from patron.access.principal import SYSTEM  # noqa: E402
from patron.access.roles import Role  # noqa: E402
from patron.db import Database  # noqa: E402
from patron.idempotency import service as idempotency  # noqa: E402
from patron.rules import service as rules  # noqa: E402
from patron.rules.schemas import RuleIn  # noqa: E402
from patron.transactions import service as transactions  # noqa: E402
from patron.transactions.schemas import TransactionIn  # noqa: E402

_ids = itertools.count()


def body(cards: list[str], rng: random.Random, prefix: str) -> dict[str, object]:
    price = rng.choice(["1500.00", "2490.00", "780.50", "12000.00", "350.00"])
    return {
        "external_id": f"{prefix}-{next(_ids)}",
        "card": rng.choice(cards),
        "location": "MSK-01",
        "items": [
            {"sku": "OIL-5W30", "category": "oil", "quantity": "1", "unit_price": price},
            {"sku": "LABOUR", "category": "service", "quantity": "1", "unit_price": "900.00"},
        ],
    }


def direct(db: Database, cards: list[str], concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """The same work the endpoint does (claim the external_id, post, store the answer), no HTTP."""
    secret = db.settings.secret_key()
    actor = access.actor_for_key(db.read(lambda s: access.list_keys(s)[0]))
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            data = TransactionIn.model_validate(body(cards, rng, f"d{n}"))
            t0 = time.perf_counter()

            def run(s, data=data):  # type: ignore[no-untyped-def]
                if idempotency.claim(s, "transaction", data.external_id, data.model_dump(mode="json")) is None:
                    out = transactions.post(s, actor, data, secret).model_dump(mode="json")
                    idempotency.complete(s, "transaction", data.external_id, 201, out)

            db.write(run)
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return time.perf_counter() - started, latencies


def _session(key: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp rather than httpx: the load generator shares the two cores with the server and
    # PostgreSQL, and aiohttp spends about half the CPU per request.
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def _post(client: aiohttp.ClientSession, url: str, payload: dict[str, object]) -> bool:
    try:
        async with client.post(url, json=payload) as r:
            await r.read()
            return r.status == 201
    except aiohttp.ClientError:
        return False


async def http_closed(
    base: str, key: str, cards: list[str], concurrency: int, seconds: float
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    url = f"{base}/v1/transactions"
    async with _session(key, concurrency) as client:

        async def worker(n: int) -> None:
            nonlocal errors
            rng = random.Random(1000 + n)
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                ok = await _post(client, url, body(cards, rng, f"h{n}"))
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


async def http_steady(
    base: str, key: str, cards: list[str], rate: float, seconds: float
) -> tuple[float, list[float], int]:
    """Open loop: requests leave on schedule whether or not earlier ones have answered, and
    latency is counted from the scheduled time, so a stall shows in the figures."""
    latencies: list[float] = []
    errors = 0
    rng = random.Random(99)
    url = f"{base}/v1/transactions"
    async with _session(key, 64) as client:

        async def one(scheduled: float) -> None:
            nonlocal errors
            ok = await _post(client, url, body(cards, rng, "s"))
            latencies.append((time.perf_counter() - scheduled) * 1000)
            errors += not ok

        started = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started, latencies, errors


def quiet_collector() -> None:
    """Move everything alive now out of the load generator's cyclic garbage collector, so that a
    full collection over the direct run's leftovers cannot stall its event loop mid-run: the open
    loop counts latency from the scheduled send, so such a stall would be charged to the server."""
    gc.collect()
    gc.freeze()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer members and shorter runs (under two minutes)")
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    # Three processes on two cores: while one waits on PostgreSQL with its GIL free, another has
    # work. Two held 200/s at p99 37-64 ms over six full runs, three at 26-32 ms.
    parser.add_argument("--workers", type=int, default=3, help="server processes (default 3: cores + 1)")
    parser.add_argument("--seconds", type=float, default=None, help="length of the direct and peak runs")
    args = parser.parse_args()
    members = args.members or (20_000 if args.quick else 100_000)
    seconds = args.seconds or (10 if args.quick else 30)
    steady_seconds = 15 if args.quick else 30

    with throwaway_postgres() as url:
        db = migrated(url)
        cards = seed_members(db, members)
        key = db.write(lambda s: access.create_key(s, SYSTEM, role=Role.CASHIER, name="bench till")[1])
        db.write(
            lambda s: rules.create(
                s,
                SYSTEM,
                RuleIn(name="1 point per 100", kind="spend", points=1, per_amount="100"),  # type: ignore[arg-type]
            )
        )
        db.write(lambda s: rules.create(s, SYSTEM, RuleIn(name="Visit", kind="visit", points=5)))

        print(f"(a) direct: service layer in-process, {args.concurrency} threads", flush=True)
        elapsed, lat = direct(db, cards, args.concurrency, seconds)
        direct_rate = report("direct", len(lat), elapsed, lat)
        db.dispose()

        port = free_port()
        server = start_server(url, port, workers=args.workers)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            print(f"(b) HTTP peak: {args.concurrency} concurrent clients, {args.workers} server workers", flush=True)
            asyncio.run(http_closed(base, key, cards, args.concurrency, 3))  # warm-up
            quiet_collector()
            elapsed, lat, errors = asyncio.run(http_closed(base, key, cards, args.concurrency, seconds))
            http_rate = report("http peak", len(lat), elapsed, lat, errors)
            print(f"(c) HTTP steady: 200 requests/s for {steady_seconds} s", flush=True)
            quiet_collector()
            elapsed, lat, errors = asyncio.run(http_steady(base, key, cards, 200, steady_seconds))
            report("http steady 200/s", len(lat), elapsed, lat, errors)
        finally:
            server.terminate()
            server.wait(10)
        print(f"ratio http/direct = {http_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()
