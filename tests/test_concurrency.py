"""Real concurrent requests against a real server, on SQLite and on PostgreSQL.

Each test starts Patron with uvicorn in a subprocess on its own fresh database (two worker
processes on PostgreSQL, so requests also race across processes), fires requests from a pool of
threads that all start at the same instant, and then reads the database back: one effect per
external_id, no balance below zero, and a ledger that `verify` finds clean.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.db import Database
from patron.ledger.models import LedgerEntry, PointAccount
from patron.ledger.verify import verify
from patron.transactions.models import Transaction
from tests.conftest import TEST_SECRET
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow

THREADS = 24
_phones = itertools.count(1)

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Live:
    """The running server, an admin key for it, and the database it serves."""

    def __init__(self, server: LiveServer, db: Database, key: str) -> None:
        self.server = server
        self.db = db
        self.key = key
        self.client = self._client()

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
            limits=httpx.Limits(max_connections=THREADS * 2, max_keepalive_connections=THREADS * 2),
        )

    def reconnect(self) -> None:
        """A fresh client: after a crash, pooled keep-alive connections point at a dead process."""
        self.client.close()
        self.client = self._client()

    def send(self, call: Call) -> Answer:
        path, body = call
        r = self.client.post(path, json=body)
        return Answer(r.status_code, r.json(), r.headers.get("Idempotent-Replayed") == "true")

    def fire(self, calls: list[Call], send: Callable[[Call], Any] | None = None) -> list[Any]:
        """Send every call from THREADS threads that start together; answers in the calls' order."""
        send = send or self.send
        n = min(THREADS, len(calls))
        start = threading.Barrier(n)
        # Each pool thread waits at the barrier before its first request, so the first n requests
        # leave together; the rest follow as threads free up.
        with ThreadPoolExecutor(n, initializer=start.wait, initargs=(30,)) as pool:
            return list(pool.map(send, calls))

    def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.send((path, body))
        assert answer.status == 201, answer.body
        assert isinstance(answer.body, dict)
        return answer.body

    def enrol(self, points: int = 0) -> str:
        n = next(_phones)
        member = self.ok(
            "/v1/members",
            {
                "first_name": "Ivan",
                "last_name": f"Racer{n}",
                "phone": f"+7917{n:07d}",
                "consents": {"program_rules": True},
            },
        )
        if points:
            self.ok(
                f"/v1/members/{member['id']}/points/adjustments",
                {"external_id": f"opening-{member['id']}", "points": points, "reason": "opening balance"},
            )
        return str(member["id"])

    def spend_rule(self) -> None:
        """One point per 10.00 paid in money."""
        self.ok("/v1/earning-rules", {"name": "1 per 10", "kind": "spend", "points": 1, "per_amount": "10.00"})


@pytest.fixture
def live(db_url: str, db: Database, tmp_path: Path) -> Iterator[Live]:
    _, key = db.write(lambda s: access.create_key(s, SYSTEM, role=Role.ADMIN, name="concurrency tests"))
    server = LiveServer(db_url, TEST_SECRET, tmp_path, workers=2 if db.dialect == "postgresql" else 1)
    server.start()
    live = Live(server, db, key)
    try:
        yield live
    finally:
        live.client.close()
        server.stop()


# Reading the database back ------------------------------------------------------------------------


def assert_ledger_clean(db: Database) -> None:
    """verify() finds nothing, and every balance is the sum of its member's entries."""

    def check(s: Session) -> None:
        checked, mismatches = verify(s)
        assert mismatches == []
        assert checked > 0
        sums = dict(
            s.execute(select(LedgerEntry.member_id, func.sum(LedgerEntry.points)).group_by(LedgerEntry.member_id)).all()
        )
        for account in s.scalars(select(PointAccount)):
            assert account.available + account.pending == sums.get(account.member_id, 0)

    db.read(check)


def account_of(db: Database, member_id: str) -> PointAccount:
    account = db.read(lambda s: s.get(PointAccount, uuid.UUID(member_id)))
    assert account is not None
    return account


def entries_of(db: Database, member_id: str) -> list[LedgerEntry]:
    return list(
        db.read(
            lambda s: s.scalars(
                select(LedgerEntry).where(LedgerEntry.member_id == uuid.UUID(member_id)).order_by(LedgerEntry.id)
            ).all()
        )
    )


def transactions_with(db: Database, prefix: str) -> list[Transaction]:
    return list(
        db.read(lambda s: s.scalars(select(Transaction).where(Transaction.external_id.startswith(prefix))).all())
    )


def assert_one_fresh_answer(answers: list[Answer]) -> Answer:
    """All 201 with the same body; exactly one of them is not a replay."""
    assert [a.status for a in answers] == [201] * len(answers), [a.body for a in answers if a.status != 201]
    assert all(a.body == answers[0].body for a in answers)
    fresh = [a for a in answers if not a.replayed]
    assert len(fresh) == 1
    return fresh[0]


# Scenarios ------------------------------------------------------------------------------------------


def test_concurrent_duplicates_have_one_effect(live: Live) -> None:
    live.spend_rule()
    member = live.enrol(points=1000)
    txn = assert_one_fresh_answer(
        live.fire([("/v1/transactions", {"external_id": "dup-t", "member_id": member, "total": "250.00"})] * 20)
    ).body
    assert txn["points_earned"] == 25
    redemption = assert_one_fresh_answer(
        live.fire([(f"/v1/members/{member}/points/redemptions", {"external_id": "dup-r", "points": 30})] * 20)
    ).body
    assert redemption["points"] == -30
    adjustment = assert_one_fresh_answer(
        live.fire(
            [(f"/v1/members/{member}/points/adjustments", {"external_id": "dup-a", "points": -20, "reason": "fix"})]
            * 20
        )
    ).body
    assert adjustment["points"] == -20
    ret = assert_one_fresh_answer(
        live.fire([(f"/v1/transactions/{txn['id']}/returns", {"external_id": "dup-ret", "amount": "100.00"})] * 20)
    ).body
    assert ret["points_reversed"] == 10

    assert len(transactions_with(live.db, "dup-t")) == 1
    kinds = sorted((e.kind, e.points) for e in entries_of(live.db, member))
    assert kinds == [("adjust", -20), ("adjust", 1000), ("earn", 25), ("redeem", -30), ("reverse", -10)]
    account = account_of(live.db, member)
    assert (account.available, account.pending) == (1000 + 25 - 30 - 20 - 10, 0)
    assert_ledger_clean(live.db)


def test_racing_redemptions_never_overspend(live: Live) -> None:
    member = live.enrol(points=100)
    answers = live.fire(
        [(f"/v1/members/{member}/points/redemptions", {"external_id": f"race-r-{i}", "points": 10}) for i in range(30)]
    )
    won = [a for a in answers if a.status == 201]
    lost = [a for a in answers if a.status != 201]
    assert len(won) == 10
    assert {(a.status, a.code) for a in lost} == {(409, "insufficient_points")}
    assert not any(a.replayed for a in answers)
    # The winners ran one after another: each saw the balance the one before left.
    assert sorted(a.body["balance_after"] for a in won) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]

    entries = entries_of(live.db, member)
    assert sorted(e.points for e in entries if e.kind == "redeem") == [-10] * 10
    assert all(e.balance_after >= 0 for e in entries)
    account = account_of(live.db, member)
    assert (account.available, account.redeemed) == (0, 100)
    assert_ledger_clean(live.db)


def test_racing_returns_of_one_purchase(live: Live) -> None:
    live.spend_rule()
    member = live.enrol(points=100)
    txn = live.ok(
        "/v1/transactions", {"external_id": "bought", "member_id": member, "total": "1000.00", "redeem_points": 100}
    )
    assert (txn["amount_due"], txn["points_earned"]) == ("900.00", 90)
    # Ten returns of a third each race for a purchase that has only three thirds.
    answers = live.fire(
        [(f"/v1/transactions/{txn['id']}/returns", {"external_id": f"ret-{i}", "amount": "300.00"}) for i in range(10)]
    )
    won = [a for a in answers if a.status == 201]
    assert len(won) == 3
    assert {(a.status, a.code) for a in answers if a.status != 201} == {(422, "validation_error")}
    assert sorted(a.body["points_reversed"] for a in won) == [30, 30, 30]
    # Cumulative rounding: 33.3 -> 33, 66.7 -> 67, 100 -> 100, whatever the order.
    assert sorted(a.body["points_restored"] for a in won) == [33, 33, 34]

    stored = transactions_with(live.db, "bought")[0]
    assert (stored.returned_amount_minor, stored.points_reversed, stored.points_restored) == (90000, 90, 100)
    account = account_of(live.db, member)
    assert (account.available, account.lifetime_earned, account.redeemed) == (100, 0, 0)
    assert_ledger_clean(live.db)


def test_racing_payments_with_points_and_earnings(live: Live) -> None:
    member = live.enrol(points=100)
    # No earning rule yet: 30 purchases of 50.00 each paying 10 points race for 100 points.
    answers = live.fire(
        [
            (
                "/v1/transactions",
                {"external_id": f"pay-{i}", "member_id": member, "total": "50.00", "redeem_points": 10},
            )
            for i in range(30)
        ]
    )
    won = [a for a in answers if a.status == 201]
    assert len(won) == 10
    assert {(a.status, a.code) for a in answers if a.status != 201} == {(409, "insufficient_points")}
    assert all(a.body["amount_due"] == "40.00" and a.body["points_value"] == "10.00" for a in won)
    assert sorted(a.body["balance"]["available"] for a in won) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert len(transactions_with(live.db, "pay-")) == 10
    assert account_of(live.db, member).available == 0

    # Now purchases that earn 10 points each race with purchases paid wholly with 10 points.
    live.spend_rule()
    earn_calls = [
        ("/v1/transactions", {"external_id": f"earn-{i}", "member_id": member, "total": "100.00"}) for i in range(20)
    ]
    pay_calls = [
        ("/v1/transactions", {"external_id": f"spend-{i}", "member_id": member, "total": "10.00", "redeem_points": 10})
        for i in range(30)
    ]
    calls = [c for pair in itertools.zip_longest(pay_calls, earn_calls) for c in pair if c is not None]
    answers = live.fire(calls)
    by_id = {call[1]["external_id"]: a for call, a in zip(calls, answers, strict=True)}
    earned = [a for k, a in by_id.items() if k.startswith("earn-")]
    spent = [a for k, a in by_id.items() if k.startswith("spend-")]
    assert all(a.status == 201 and a.body["points_earned"] == 10 for a in earned)
    won = [a for a in spent if a.status == 201]
    assert {(a.status, a.code) for a in spent if a.status != 201} <= {(409, "insufficient_points")}
    assert all(a.body["points_earned"] == 0 and a.body["amount_due"] == "0.00" for a in won)
    assert all(a.body["balance"]["available"] >= 0 for a in earned + won)
    # Payments only fail when the balance is short, and every earning is there to be spent.
    assert 0 <= len(won) <= 20

    entries = entries_of(live.db, member)
    assert all(e.balance_after >= 0 for e in entries)
    assert Counter(e.kind for e in entries) == Counter({"adjust": 1, "earn": 20, "redeem": 10 + len(won)})
    assert len(transactions_with(live.db, "earn-")) == 20
    assert len(transactions_with(live.db, "spend-")) == len(won)
    assert account_of(live.db, member).available == 200 - 10 * len(won)
    assert_ledger_clean(live.db)


def test_point_jobs_race_with_purchases_and_redemptions(live: Live) -> None:
    live.spend_rule()
    members = [live.enrol(points=300) for _ in range(3)]
    # Purchases from now on earn points held 2 days and expiring 10 days after the purchase.
    r = live.client.patch("/v1/program", json={"pending_days": 2, "expiry": {"policy": "after_days", "days": 10}})
    assert r.status_code == 200, r.text
    now = datetime.now(UTC)
    release = ("/v1/jobs/release-pending/run", {"as_of": (now + timedelta(days=3)).isoformat()})
    expire = ("/v1/jobs/expire-points/run", {"as_of": (now + timedelta(days=11)).isoformat()})
    calls: list[Call] = []
    for i in range(12):
        for j, member in enumerate(members):
            calls.append(
                ("/v1/transactions", {"external_id": f"job-t-{i}-{j}", "member_id": member, "total": "200.00"})
            )
            calls.append((f"/v1/members/{member}/points/redemptions", {"external_id": f"job-r-{i}-{j}", "points": 40}))
        if i % 3 == 0:
            calls += [release, expire]

    answers = live.fire(calls)
    for (path, _), a in zip(calls, answers, strict=True):
        if path.startswith("/v1/jobs/"):
            assert a.status == 200, a.body
        elif "redemptions" in path:
            assert (a.status, a.code) in ((201, None), (409, "insufficient_points")), a.body
        else:
            assert a.status == 201 and a.body["points_earned"] == 20, a.body
    # Run once more after the storm: everything due was done, and nothing is done twice.
    for path, body in (release, expire):
        r = live.client.post(path, json=body)
        assert r.status_code == 200, r.text
    for path, body in (release, expire):
        r = live.client.post(path, json=body)
        assert r.json()["result"]["points"] == 0

    for member in members:
        entries = entries_of(live.db, member)
        assert all(e.balance_after >= 0 for e in entries)
        account = account_of(live.db, member)
        assert account.pending == 0  # released by the last run, or expired
        assert account.available >= 0
        assert account.available == 300 + 12 * 20 - account.redeemed - account.expired
    assert_ledger_clean(live.db)


def _split_by_body(calls: list[Call], answers: list[Answer]) -> tuple[dict[str, Any], list[Answer], list[Answer]]:
    """The body that won, the answers to requests with that body, and the answers to the others."""
    fresh = [(call, a) for call, a in zip(calls, answers, strict=True) if a.status == 201 and not a.replayed]
    assert len(fresh) == 1, [a.body for a in answers]
    winner = fresh[0][0][1]
    same = [a for call, a in zip(calls, answers, strict=True) if call[1] == winner]
    other = [a for call, a in zip(calls, answers, strict=True) if call[1] != winner]
    return winner, same, other


def test_same_external_id_with_different_bodies(live: Live) -> None:
    live.spend_rule()
    member = live.enrol(points=100)
    cases: list[list[Call]] = [
        [
            ("/v1/transactions", {"external_id": "clash-t", "member_id": member, "total": f"{100 * (i % 4 + 1)}.00"})
            for i in range(20)
        ],
        [
            (f"/v1/members/{member}/points/redemptions", {"external_id": "clash-r", "points": 5 * (i % 4 + 1)})
            for i in range(20)
        ],
        [
            (
                f"/v1/members/{member}/points/adjustments",
                {"external_id": "clash-a", "points": i % 4 + 1, "reason": f"goodwill {i % 4}"},
            )
            for i in range(20)
        ],
    ]
    winners = []
    for calls in cases:
        answers = live.fire(calls)
        winner, same, other = _split_by_body(calls, answers)
        assert len(same) == 5 and len(other) == 15
        assert_one_fresh_answer(same)
        assert {(a.status, a.code) for a in other} == {(409, "idempotency_conflict")}
        winners.append(winner)

    txn, redemption, adjustment = winners
    earned = int(txn["total"].split(".")[0]) // 10
    assert [t.total_minor for t in transactions_with(live.db, "clash-t")] == [int(txn["total"].split(".")[0]) * 100]
    kinds = sorted((e.kind, e.points) for e in entries_of(live.db, member))
    assert kinds == sorted(
        [("adjust", 100), ("earn", earned), ("redeem", -redemption["points"]), ("adjust", adjustment["points"])]
    )
    account = account_of(live.db, member)
    assert account.available == 100 + earned - redemption["points"] + adjustment["points"]
    assert_ledger_clean(live.db)


def test_a_killed_server_neither_loses_nor_repeats(live: Live) -> None:
    live.spend_rule()
    member = live.enrol(points=100_000)
    calls: list[Call] = []
    for i in range(50):
        calls.append(("/v1/transactions", {"external_id": f"kill-t-{i}", "member_id": member, "total": "123.00"}))
        calls.append((f"/v1/members/{member}/points/redemptions", {"external_id": f"kill-r-{i}", "points": 7}))
        calls.append(
            (f"/v1/members/{member}/points/adjustments", {"external_id": f"kill-a-{i}", "points": 5, "reason": "x"})
        )

    answered = 0
    lock = threading.Lock()

    def send_then_crash(call: Call) -> Answer | None:
        nonlocal answered
        try:
            answer = live.send(call)
        except httpx.TransportError:  # refused, reset or cut off by the crash
            return None
        with lock:
            answered += 1
            if answered == 40:  # mid-load: the next requests are in flight
                live.server.kill()
        return answer

    first = live.fire(calls, send_then_crash)
    assert any(a is None for a in first), "the crash cut nothing off"
    assert all(a is None or a.status == 201 for a in first), [a.body for a in first if a and a.status != 201]

    live.server.start()
    live.reconnect()
    again = live.fire(calls)
    assert [a.status for a in again] == [201] * len(calls), [a.body for a in again if a.status != 201]
    for before, after in zip(first, again, strict=True):
        if before is not None:  # answered before the crash: the retry is that answer, replayed
            assert after.replayed
            assert after.body == before.body

    assert len(transactions_with(live.db, "kill-t-")) == 50
    kinds = Counter(e.kind for e in entries_of(live.db, member))
    assert kinds == Counter({"earn": 50, "redeem": 50, "adjust": 51})
    account = account_of(live.db, member)
    assert account.available == 100_000 + 50 * 12 - 50 * 7 + 50 * 5
    assert_ledger_clean(live.db)
