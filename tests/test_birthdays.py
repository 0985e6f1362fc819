"""birthday-bonuses: paid once a year on the member's birthday in the programme's time zone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.db import Database
from patron.jobs import birthdays
from patron.jobs.birthdays import celebrated_days
from patron.jobs.models import BirthdayAward
from patron.kit import clock
from patron.ledger.verify import verify
from tests.conftest import TEST_SECRET

# 21:30 UTC on 23 November is 00:30 on 24 November in Moscow (UTC+3), the programme's zone.
EVE = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _a_week_before_eve() -> Iterator[None]:
    """Members join, buy and get their segments a week before EVE, whatever today's date is."""
    with clock.frozen(EVE - timedelta(days=7)):
        yield


def rule(api: Any, **body: Any) -> dict[str, Any]:
    body = {"kind": "birthday", "name": "Happy birthday", "points": 200, **body}
    r = api.post("/v1/earning-rules", body, role="marketer")
    assert r.status_code == 201, r.text
    return dict(r.json())


def run(api: Any, as_of: datetime) -> dict[str, Any]:
    r = api.post("/v1/jobs/birthday-bonuses/run", {"as_of": as_of.isoformat()})
    assert r.status_code == 200, r.text
    assert r.json()["job"] == "birthday-bonuses"
    return dict(r.json()["result"])


def ledger(api: Any, member_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/members/{member_id}/ledger?limit=500")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def balance(api: Any, member_id: str) -> dict[str, int]:
    body = api.get(f"/v1/members/{member_id}").json()
    return dict(body["points"])


def awards(api: Any) -> list[tuple[str, int, int]]:
    rows = api.db.read(
        lambda s: s.execute(select(BirthdayAward.member_id, BirthdayAward.year, BirthdayAward.points)).all()
    )
    return sorted((str(m), y, p) for m, y, p in rows)


def assert_consistent(api: Any) -> None:
    _, mismatches = api.db.read(verify)
    assert mismatches == []


def test_paid_on_the_day_in_the_programmes_time_zone(api):
    r = rule(api)
    born_24 = api.enrol(birth_date="1990-11-24")
    born_23 = api.enrol(birth_date="1985-11-23")  # 23 Nov is over in Moscow at EVE
    nobody = api.enrol()  # no birth date

    assert run(api, EVE) == {"members": 1, "points": 200}

    [entry] = ledger(api, born_24["id"])
    assert entry["kind"] == "bonus"
    assert entry["points"] == 200
    assert entry["balance_after"] == 200
    assert entry["rule_id"] == r["id"]
    assert entry["reason"] == "Happy birthday"
    assert entry["transaction_id"] is None
    assert entry["expires_at"] is None  # a fresh programme's expiry is `none`
    assert balance(api, born_24["id"]) == {"available": 200, "pending": 0}
    assert ledger(api, born_23["id"]) == [] and ledger(api, nobody["id"]) == []
    assert awards(api) == [(born_24["id"], 2026, 200)]
    assert_consistent(api)


def test_not_on_other_days_and_not_twice_in_a_year_but_again_the_next(api):
    rule(api)
    m = api.enrol(birth_date="1990-11-24")
    assert run(api, EVE - timedelta(hours=1)) == {"members": 0, "points": 0}  # 23:30 on the 23rd in Moscow
    assert run(api, EVE + timedelta(days=1)) == {"members": 0, "points": 0}  # the 25th
    assert ledger(api, m["id"]) == []

    assert run(api, EVE) == {"members": 1, "points": 200}
    # again the same instant, later that day, and once more on the day by a later clock
    assert run(api, EVE) == {"members": 0, "points": 0}
    assert run(api, EVE + timedelta(hours=20)) == {"members": 0, "points": 0}
    assert balance(api, m["id"]) == {"available": 200, "pending": 0}

    next_year = datetime(2027, 11, 24, 9, 0, tzinfo=UTC)
    assert run(api, next_year) == {"members": 1, "points": 200}
    assert run(api, next_year) == {"members": 0, "points": 0}
    assert [e["balance_after"] for e in ledger(api, m["id"])] == [400, 200]
    assert awards(api) == [(m["id"], 2026, 200), (m["id"], 2027, 200)]
    assert_consistent(api)


def test_a_later_timezone_moves_the_day(api):
    rule(api)
    m = api.enrol(birth_date="1990-11-23")
    assert api.patch("/v1/program", {"timezone": "America/New_York"}).status_code == 200
    # 21:30 UTC is 16:30 on the 23rd in New York: still the birthday there
    assert run(api, EVE) == {"members": 1, "points": 200}
    assert balance(api, m["id"])["available"] == 200


def test_blocked_members_are_skipped_and_paid_once_unblocked_that_day(api):
    rule(api)
    m = api.enrol(birth_date="1990-11-24")
    assert api.post(f"/v1/members/{m['id']}/block", {"reason": "fraud review"}, role="agent").status_code == 200
    assert run(api, EVE) == {"members": 0, "points": 0}
    assert ledger(api, m["id"]) == []
    assert awards(api) == []
    assert api.post(f"/v1/members/{m['id']}/unblock", role="agent").status_code == 200
    assert run(api, EVE + timedelta(hours=2)) == {"members": 1, "points": 200}


def test_without_rules_nothing_is_paid_and_inactive_rules_pay_nothing(api):
    m = api.enrol(birth_date="1990-11-24")
    assert run(api, EVE) == {"members": 0, "points": 0}
    rule(api, active=False)
    assert run(api, EVE) == {"members": 0, "points": 0}
    assert ledger(api, m["id"]) == []
    # a rule switched on later that day still pays: nothing was recorded for the member
    rule(api, name="Late rule", points=50)
    assert run(api, EVE) == {"members": 1, "points": 50}


def test_29_february_is_celebrated_on_28_february_in_other_years(api):
    rule(api)
    leapling = api.enrol(birth_date="2000-02-29")
    born_28 = api.enrol(birth_date="2001-02-28")

    def on(day: str) -> dict[str, Any]:
        return run(api, datetime.fromisoformat(f"{day}T12:00:00+03:00"))

    assert on("2027-02-28") == {"members": 2, "points": 400}  # 2027 has no 29 February
    assert on("2027-03-01") == {"members": 0, "points": 0}
    assert on("2028-02-28") == {"members": 1, "points": 200}  # a leap year: the 28th is not the leapling's
    assert on("2028-02-29") == {"members": 1, "points": 200}
    assert awards(api) == sorted(
        [
            (leapling["id"], 2027, 200),
            (born_28["id"], 2027, 200),
            (born_28["id"], 2028, 200),
            (leapling["id"], 2028, 200),
        ]
    )


def test_celebrated_days():
    assert celebrated_days(datetime(2027, 2, 28).date()) == (2, [28, 29])
    assert celebrated_days(datetime(2028, 2, 28).date()) == (2, [28])
    assert celebrated_days(datetime(2028, 2, 29).date()) == (2, [29])
    assert celebrated_days(datetime(2027, 11, 24).date()) == (11, [24])


def test_rule_conditions_tiers_segments_dates_weekdays_and_caps(api):
    ladder = {
        "metric": "visits",
        "window_days": None,
        "tiers": [
            {"code": "base", "name": "Base", "threshold": 0},
            {"code": "vip", "name": "VIP", "threshold": 1},
        ],
    }
    assert api.put("/v1/tiers", ladder).status_code == 200
    segment = {
        "code": "fans",
        "name": "Fans",
        "match": "all",
        "conditions": [{"field": "attribute.fan", "op": "eq", "value": "yes"}],
    }
    assert api.post("/v1/segments", segment).status_code == 201
    everyone = rule(api, name="Everyone", points=100)
    vip = rule(api, name="VIP birthday", points=500, conditions={"tiers": ["vip"]})
    fans = rule(api, name="Fans", points=300, max_points=250, conditions={"segments": ["fans"]})
    # EVE is Tuesday 24 November in Moscow (isoweekday 2)
    rule(api, name="Mondays only", points=1000, conditions={"weekdays": [1]})
    tuesday = rule(api, name="Tuesdays", points=7, conditions={"weekdays": [2]})
    rule(api, name="Over", points=1000, conditions={"ends_at": "2026-11-20T00:00:00+03:00"})
    rule(api, name="Not yet", points=1000, conditions={"starts_at": "2026-12-01T00:00:00+03:00"})
    windowed = rule(
        api,
        name="This month",
        points=3,
        conditions={"starts_at": "2026-11-01T00:00:00+03:00", "ends_at": "2026-12-01T00:00:00+03:00"},
    )
    rule(api, name="At a till", points=1000, conditions={"min_total": "10.00"})

    plain = api.enrol(birth_date="1990-11-24")
    star = api.enrol(birth_date="1991-11-24", attributes={"fan": "yes"})
    r = api.post("/v1/transactions", {"external_id": "t1", "member_id": star["id"], "total": "10.00"})
    assert r.json()["tier"]["code"] == "vip"
    assert api.post("/v1/jobs/refresh-segments/run", {"as_of": EVE.isoformat()}).status_code == 200

    assert run(api, EVE) == {"members": 2, "points": 110 + 860}

    def paid(member: dict[str, Any]) -> list[tuple[str, int]]:
        return sorted((e["rule_id"], e["points"]) for e in ledger(api, member["id"]) if e["kind"] == "bonus")

    assert paid(plain) == sorted([(everyone["id"], 100), (tuesday["id"], 7), (windowed["id"], 3)])
    assert paid(star) == sorted(
        [(everyone["id"], 100), (vip["id"], 500), (fans["id"], 250), (tuesday["id"], 7), (windowed["id"], 3)]
    )
    assert balance(api, star["id"]) == {"available": 860, "pending": 0}
    assert awards(api) == sorted([(plain["id"], 2026, 110), (star["id"], 2026, 860)])
    assert_consistent(api)


def test_bonus_follows_the_expiry_policy_and_is_spendable_at_once(api):
    assert (
        api.patch("/v1/program", {"pending_days": 14, "expiry": {"policy": "after_days", "days": 30}}).status_code
        == 200
    )
    rule(api)
    m = api.enrol(birth_date="1990-11-24")
    assert run(api, EVE) == {"members": 1, "points": 200}
    [entry] = ledger(api, m["id"])
    assert datetime.fromisoformat(entry["expires_at"]) == EVE + timedelta(days=30)
    assert balance(api, m["id"]) == {"available": 200, "pending": 0}
    r = api.get(f"/v1/members/{m['id']}/points").json()
    assert r["expiring"] == [{"points": 200, "expires_at": entry["expires_at"]}]
    # the birthday points expire with the expiry job like any other
    result = api.post("/v1/jobs/expire-points/run", {"as_of": (EVE + timedelta(days=30)).isoformat()}).json()
    assert result["result"] == {"members": 1, "points": 200}
    assert balance(api, m["id"]) == {"available": 0, "pending": 0}
    assert_consistent(api)


def test_many_members_in_chunks(api, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(birthdays, "CHUNK", 2)
    rule(api, points=10)
    born = [api.enrol(birth_date=f"19{80 + i}-11-24") for i in range(5)]
    others = [api.enrol(birth_date="1990-11-25") for _ in range(2)]
    assert run(api, EVE) == {"members": 5, "points": 50}
    assert all(balance(api, m["id"])["available"] == 10 for m in born)
    assert all(balance(api, m["id"])["available"] == 0 for m in others)
    assert run(api, EVE) == {"members": 0, "points": 0}


def test_from_the_command_line(api, db_url):
    rule(api)
    m = api.enrol(birth_date="1990-11-24")
    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    result = runner.invoke(
        cli_app, ["jobs", "run", "birthday-bonuses", "--as-of", "2026-11-24T00:30:00+03:00"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "birthday-bonuses: members 1, points 200" in result.stdout
    assert balance(api, m["id"]) == {"available": 200, "pending": 0}
    again = runner.invoke(cli_app, ["jobs", "run", "birthday-bonuses", "--as-of", EVE.isoformat()], env=env)
    assert "birthday-bonuses: members 0, points 0" in again.stdout


def test_two_runs_at_once_pay_each_member_once(api, settings, monkeypatch: pytest.MonkeyPatch):
    """Two processes' worth of the job (own connections), racing over the same chunks."""
    monkeypatch.setattr(birthdays, "CHUNK", 3)
    rule(api, points=10)
    born = [api.enrol(birth_date=f"19{70 + i}-11-24") for i in range(8)]
    replicas = [Database(settings), Database(settings)]
    barrier = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def job(database: Database) -> None:
        barrier.wait()
        results.append(birthdays.birthday_bonuses(database, EVE))

    threads = [threading.Thread(target=job, args=(d,)) for d in replicas]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for d in replicas:
            d.dispose()
    assert sum(r["members"] for r in results) == 8 and sum(r["points"] for r in results) == 80
    assert all(balance(api, m["id"]) == {"available": 10, "pending": 0} for m in born)
    assert len(awards(api)) == 8
    assert_consistent(api)
