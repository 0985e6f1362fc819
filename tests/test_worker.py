"""The worker: timetables, slots claimed once across replicas, runs recorded, `patron worker`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.config import Settings
from patron.db import Database
from patron.jobs import registry, schedule, worker
from patron.jobs.models import JobRun
from patron.kit import clock
from patron.program.models import Program
from patron.rules.models import EarningRule
from tests.conftest import TEST_SECRET
from tests.helpers import assert_problem

MOSCOW = ZoneInfo("Europe/Moscow")
# 18:00 in Moscow on Monday 23 November 2026
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SLOTS = {
    "release-pending": "2026-11-23T14:05:00Z",  # hourly :05 -> 17:05 in Moscow
    "expire-points": "2026-11-22T21:10:00Z",  # daily 00:10 in Moscow
    "birthday-bonuses": "2026-11-22T21:15:00Z",
    "requalify-tiers": "2026-11-22T21:30:00Z",
    "refresh-segments": "2026-11-22T22:00:00Z",
    "warm-dashboard": "2026-11-22T22:30:00Z",
}
JOBS = list(SLOTS)
ALL = [*JOBS, "deliver-mail"]  # mail retries run every minute, not in a daily slot


def runs(db: Database) -> list[tuple[str, str, str]]:
    rows = db.read(lambda s: s.execute(select(JobRun.job, JobRun.slot, JobRun.status)).all())
    return sorted((j, sl, st) for j, sl, st in rows)


def defaults() -> dict[str, schedule.Schedule]:
    """The default timetable of the daily and hourly jobs; mail retries (every minute) have a test
    of their own."""
    return worker.schedules({"deliver-mail": "off"})


# --- Timetables -----------------------------------------------------------------------------------


def test_every_job_has_a_default_schedule():
    assert list(schedule.DEFAULTS) == list(registry.JOBS) == ALL
    assert {n: s.text for n, s in worker.schedules({}).items()} == {
        "release-pending": "hourly :05",
        "expire-points": "daily 00:10",
        "birthday-bonuses": "daily 00:15",
        "requalify-tiers": "daily 00:30",
        "refresh-segments": "daily 01:00",
        "warm-dashboard": "daily 01:30",
        "deliver-mail": "every minute",
    }


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("daily 0:10", "daily 00:10"),
        ("Daily", "daily 00:00"),
        ("daily  23:59", "daily 23:59"),
        ("hourly", "hourly :00"),
        ("hourly :45", "hourly :45"),
        ("every 15m", "every 15 minutes"),
        ("every 2 hours", "every 120 minutes"),
        ("every 1 minute", "every minute"),
        (" OFF ", "off"),
    ],
)
def test_schedule_texts(text, normal):
    assert schedule.parse(text).text == normal


@pytest.mark.parametrize("text", ["weekly", "daily 24:00", "daily 10:60", "hourly :60", "every 0m", "every 8 days", ""])
def test_bad_schedules_are_refused(text):
    with pytest.raises(ValueError, match="schedule|takes"):
        schedule.parse(text)


def test_slots_in_the_programmes_time_zone():
    daily = schedule.parse("daily 00:10")
    assert daily.latest(NOW, MOSCOW) == datetime(2026, 11, 22, 21, 10, tzinfo=UTC)
    assert daily.next(NOW, MOSCOW) == datetime(2026, 11, 23, 21, 10, tzinfo=UTC)
    # exactly at the slot it is the latest one
    assert daily.latest(datetime(2026, 11, 23, 21, 10, tzinfo=UTC), MOSCOW) == datetime(
        2026, 11, 23, 21, 10, tzinfo=UTC
    )
    hourly = schedule.parse("hourly :05")
    assert hourly.latest(NOW, MOSCOW) == datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
    assert hourly.next(NOW, MOSCOW) == datetime(2026, 11, 23, 15, 5, tzinfo=UTC)
    # a half-hour zone: 15:30 in Kolkata, the hour's :05 was at 15:05 local = 09:35 UTC
    kolkata = ZoneInfo("Asia/Kolkata")
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert hourly.latest(at, kolkata) == datetime(2026, 11, 23, 9, 35, tzinfo=UTC)
    every = schedule.parse("every 15m")
    assert every.latest(datetime(2026, 11, 23, 10, 7, tzinfo=UTC), MOSCOW) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert every.next(datetime(2026, 11, 23, 10, 7, tzinfo=UTC), MOSCOW) == datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    off = schedule.parse("off")
    assert off.latest(NOW, MOSCOW) is None and off.next(NOW, MOSCOW) is None
    assert schedule.slot_key(datetime(2026, 11, 23, 0, 10, tzinfo=MOSCOW)) == "2026-11-22T21:10:00Z"


def test_daily_slots_across_a_daylight_saving_change():
    berlin = ZoneInfo("Europe/Berlin")
    daily = schedule.parse("daily 00:10")
    # the clocks go back on 25 October 2026: 00:10 is at +02:00 before, +01:00 after
    assert daily.latest(datetime(2026, 10, 25, 12, 0, tzinfo=UTC), berlin) == datetime(2026, 10, 24, 22, 10, tzinfo=UTC)
    assert daily.next(datetime(2026, 10, 25, 12, 0, tzinfo=UTC), berlin) == datetime(2026, 10, 25, 23, 10, tzinfo=UTC)


def test_the_schedule_setting():
    table = worker.schedules(Settings(schedule={"refresh-segments": "every 30m", "expire-points": "off"}).schedule)
    assert table["refresh-segments"].text == "every 30 minutes"
    assert table["expire-points"].kind == "off"
    assert table["release-pending"].text == "hourly :05"
    with pytest.raises(ValidationError, match="not a schedule"):
        Settings(schedule={"expire-points": "weekly"})
    with pytest.raises(ValidationError, match="no job named"):
        Settings(schedule={"send-mail": "daily"})


def test_the_schedule_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATRON_SCHEDULE", json.dumps({"birthday-bonuses": "daily 09:00"}))
    assert Settings().schedule == {"birthday-bonuses": "daily 09:00"}


# --- Passes of the worker ------------------------------------------------------------------------


def test_a_pass_runs_every_due_job_once_and_records_it(api, db):
    r = api.post("/v1/earning-rules", {"kind": "birthday", "name": "Birthday", "points": 100}, role="marketer")
    assert r.status_code == 201
    m = api.enrol(birth_date="1990-11-23")

    ran = worker.run_due(db, defaults(), worker="w1", now=NOW)
    assert [(r.job, r.slot) for r in ran] == list(SLOTS.items())
    assert {r.job: r.result for r in ran}["birthday-bonuses"] == {"members": 1, "points": 100}
    assert api.get(f"/v1/members/{m['id']}").json()["points"]["available"] == 100
    assert runs(db) == sorted((j, s, "done") for j, s in SLOTS.items())
    row = db.read(lambda s: s.get(JobRun, ("birthday-bonuses", SLOTS["birthday-bonuses"])))
    assert (row.as_of, row.worker, row.error) == (NOW, "w1", None)
    assert row.result == {"members": 1, "points": 100}
    assert row.finished_at is not None and row.finished_at >= row.started_at

    # the same slots again: nothing to do, whoever asks
    assert worker.run_due(db, defaults(), worker="w2", now=NOW + timedelta(minutes=4)) == []
    # an hour on, only the hourly job has a new slot
    ran = worker.run_due(db, defaults(), worker="w1", now=NOW + timedelta(hours=1))
    assert [(r.job, r.slot) for r in ran] == [("release-pending", "2026-11-23T15:05:00Z")]
    assert len(runs(db)) == 7


def test_after_downtime_only_the_latest_slot_runs(db):
    worker.run_due(db, defaults(), worker="w1", now=NOW)
    later = NOW + timedelta(days=3, hours=5)  # 23:00 in Moscow on the 26th
    ran = worker.run_due(db, defaults(), worker="w1", now=later)
    assert [(r.job, r.slot) for r in ran] == [
        ("release-pending", "2026-11-26T19:05:00Z"),
        ("expire-points", "2026-11-25T21:10:00Z"),
        ("birthday-bonuses", "2026-11-25T21:15:00Z"),
        ("requalify-tiers", "2026-11-25T21:30:00Z"),
        ("refresh-segments", "2026-11-25T22:00:00Z"),
        ("warm-dashboard", "2026-11-25T22:30:00Z"),
    ]
    assert all(r.result is not None for r in ran)
    assert len(runs(db)) == 12
    assert worker.run_due(db, defaults(), worker="w1", now=later) == []


def test_jobs_switched_off_do_not_run_and_a_stop_request_ends_the_pass(db):
    table = worker.schedules({"release-pending": "off", "refresh-segments": "off", "deliver-mail": "off"})
    ran = worker.run_due(db, table, worker="w1", now=NOW)
    assert [r.job for r in ran] == ["expire-points", "birthday-bonuses", "requalify-tiers", "warm-dashboard"]
    stop = threading.Event()
    stop.set()
    assert worker.run_due(db, defaults(), worker="w1", now=NOW, stop=stop) == []
    assert worker.next_wake(table, NOW, MOSCOW) == datetime(2026, 11, 23, 21, 10, tzinfo=UTC)


def test_a_failing_job_is_recorded_and_the_others_still_run(api, db):
    corrupt_a_birthday_rule(api)
    ran = worker.run_due(db, defaults(), worker="w1", now=NOW)
    assert [(r.job, r.result is None) for r in ran] == [(job, job == "birthday-bonuses") for job in JOBS]
    failed = db.read(lambda s: s.get(JobRun, ("birthday-bonuses", SLOTS["birthday-bonuses"])))
    assert failed.status == "failed"
    assert failed.error == "ValueError (see the worker's log)"  # no message: it may quote data
    assert failed.result is None and failed.finished_at is not None
    # the failed slot is not retried; the next one is
    assert worker.run_due(db, defaults(), worker="w1", now=NOW + timedelta(minutes=1)) == []
    listed = {j["name"]: j for j in api.get("/v1/jobs", role="analyst").json()["items"]}
    assert listed["birthday-bonuses"]["last_run"]["status"] == "failed"
    assert listed["birthday-bonuses"]["last_run"]["error"] == "ValueError (see the worker's log)"


def test_two_workers_racing_for_the_same_slots_run_each_job_once(db, settings):
    replicas = [Database(settings), Database(settings)]
    barrier = threading.Barrier(2)
    results: dict[str, list[worker.Ran]] = {}

    def replica(name: str, database: Database) -> None:
        barrier.wait()
        results[name] = worker.run_due(database, defaults(), worker=name, now=NOW)

    threads = [threading.Thread(target=replica, args=(f"w{i}", d)) for i, d in enumerate(replicas)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for d in replicas:
            d.dispose()
    ran = [(r.job, r.slot) for name in ("w0", "w1") for r in results[name]]
    assert sorted(ran) == sorted(SLOTS.items())  # every slot once, by one replica or the other
    rows = db.read(lambda s: s.execute(select(JobRun.job, JobRun.worker, JobRun.status)).all())
    assert len(rows) == 6
    by = {job: w for job, w, _ in rows}
    for name in ("w0", "w1"):
        assert {r.job for r in results[name]} == {job for job, w in by.items() if w == name}
    assert {st for _, _, st in rows} == {"done"}


# --- `patron worker` ---------------------------------------------------------------------------


def cli_env(db_url: str, **extra: str) -> dict[str, str]:
    return {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET, "PATRON_LOG_LEVEL": "WARNING", **extra}


def test_worker_once_runs_what_is_due_and_exits(db, db_url):
    runner = CliRunner()
    env = cli_env(
        db_url, PATRON_SCHEDULE=json.dumps({"refresh-segments": "off", "warm-dashboard": "off", "deliver-mail": "off"})
    )
    with clock.frozen(NOW):
        result = runner.invoke(cli_app, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"release-pending (slot {SLOTS['release-pending']}): members 0, points 0",
        f"expire-points (slot {SLOTS['expire-points']}): members 0, points 0",
        f"birthday-bonuses (slot {SLOTS['birthday-bonuses']}): members 0, points 0",
        f"requalify-tiers (slot {SLOTS['requalify-tiers']}): members 0, upgraded 0, downgraded 0",
    ]
    assert len(runs(db)) == 4
    with clock.frozen(NOW + timedelta(minutes=1)):
        again = runner.invoke(cli_app, ["worker", "--once"], env=env)
    assert again.exit_code == 0 and again.stdout.strip() == "Nothing due."


def corrupt_a_birthday_rule(api: Any) -> None:
    """A rule row no API call could write: its condition is not a time."""
    r = api.post("/v1/earning-rules", {"kind": "birthday", "name": "Birthday", "points": 100}, role="marketer")
    assert r.status_code == 201

    def corrupt(s: Any) -> None:
        s.execute(update(EarningRule).values(conditions={"starts_at": "garbage"}))
        s.execute(update(Program).values(config_version=Program.config_version + 1))

    api.db.write(corrupt)


def test_worker_once_exits_1_when_a_job_failed(api, db_url):
    corrupt_a_birthday_rule(api)
    with clock.frozen(NOW):
        result = CliRunner().invoke(cli_app, ["worker", "--once"], env=cli_env(db_url))
    assert result.exit_code == 1
    assert "birthday-bonuses (slot 2026-11-22T21:15:00Z): failed: ValueError (see the worker's log)" in result.stdout
    assert "garbage" not in result.output


def far_schedule() -> str:
    """Every job daily at a local time twelve hours away, so no slot turns over during the test."""
    at = (datetime.now(MOSCOW) + timedelta(hours=12)).strftime("%H:%M")
    return json.dumps(dict.fromkeys(ALL, f"daily {at}"))


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our interpreter, our module
            [sys.executable, "-m", "patron.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.mark.slow
def test_two_worker_processes_run_each_slot_once(db, db_url, tmp_path):
    env = cli_env(db_url, PATRON_SCHEDULE=far_schedule())
    procs = [spawn(["worker", "--once"], env, tmp_path / f"w{i}.log") for i in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, (tmp_path / "w0.log").read_text() + (tmp_path / "w1.log").read_text()
    outputs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
    ran = [line.split(" ")[0] for out in outputs for line in out.splitlines() if "(slot " in line]
    assert sorted(ran) == sorted(ALL)
    rows = runs(db)
    assert [(job, st) for job, _, st in rows] == sorted((job, "done") for job in ALL)
    assert len({w for (w,) in db.read(lambda s: s.execute(select(JobRun.worker)).all())}) in (1, 2)


@pytest.mark.slow
def test_the_worker_stops_between_jobs_on_sigterm(db, db_url, tmp_path):
    env = cli_env(db_url, PATRON_SCHEDULE=far_schedule(), PATRON_WORKER_POLL_SECONDS="0.2")
    log = tmp_path / "worker.log"
    proc = spawn(["worker"], env, log)
    try:
        deadline = time.monotonic() + 60
        while len([r for r in runs(db) if r[2] == "done"]) < len(ALL):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1)  # several more passes: nothing new is due
        assert len(runs(db)) == len(ALL)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Worker started: release-pending daily" in text
    assert "SIGTERM: stopping after the job at work" in text
    assert text.rstrip().endswith("Worker stopped.")


# --- The record through the API --------------------------------------------------------------


def test_get_jobs_lists_schedules_and_last_runs(api, db, db_url):
    body = api.get("/v1/jobs", role="analyst").json()
    assert [j["name"] for j in body["items"]] == ALL
    assert [j["schedule"] for j in body["items"]] == [s.text for s in worker.schedules({}).values()]
    assert all(j["last_run"] is None for j in body["items"])
    assert all(datetime.fromisoformat(j["next_run_at"]) > datetime.now(UTC) for j in body["items"])
    assert_problem(api.get("/v1/jobs", role="cashier"), 403, "forbidden")
    assert_problem(api.get("/v1/jobs", role=None), 401, "unauthorized")

    as_of = "2026-11-20T10:00:00+03:00"
    assert api.post("/v1/jobs/expire-points/run", {"as_of": as_of}).status_code == 200
    worker.run_due(db, worker.schedules({j: "off" for j in ALL if j != "release-pending"}), worker="w9", now=NOW)
    items = {j["name"]: j for j in api.get("/v1/jobs", role="marketer").json()["items"]}
    manual = items["expire-points"]["last_run"]
    assert manual["manual"] is True and manual["slot"].startswith("manual:")
    assert datetime.fromisoformat(manual["as_of"]) == datetime.fromisoformat(as_of)
    assert (manual["status"], manual["result"], manual["error"]) == ("done", {"members": 0, "points": 0}, None)
    scheduled = items["release-pending"]["last_run"]
    assert (scheduled["manual"], scheduled["slot"], scheduled["worker"]) == (False, SLOTS["release-pending"], "w9")
    assert items["requalify-tiers"]["last_run"] is None
    # a run by hand is recorded even when it is the CLI's
    result = CliRunner().invoke(cli_app, ["jobs", "run", "refresh-segments"], env=cli_env(db_url))
    assert result.exit_code == 0, result.output
    items = {j["name"]: j for j in api.get("/v1/jobs").json()["items"]}
    assert items["refresh-segments"]["last_run"]["manual"] is True
    assert items["refresh-segments"]["last_run"]["result"]["segments"] == 3


def test_runs_by_hand_each_get_a_row(db):
    for _ in range(3):
        registry.run_by_hand(db, "release-pending", NOW)
    rows = db.read(lambda s: s.execute(select(JobRun.slot, JobRun.status)).all())
    assert len(rows) == 3 and all(slot.startswith("manual:") and st == "done" for slot, st in rows)
