"""requalify-tiers: tiers recomputed over the window ending at `as_of`, both ways, with grace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.jobs import requalify
from patron.kit import clock
from patron.members.models import Member
from patron.tiers.models import TierChange
from tests.conftest import TEST_SECRET

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

LADDER: dict[str, Any] = {
    "metric": "points",
    "window_days": 30,
    "tiers": [
        {"code": "new", "name": "New", "threshold": 0, "multiplier": "1", "benefits": []},
        {"code": "regular", "name": "Regular", "threshold": 100, "multiplier": "1", "benefits": []},
        {"code": "vip", "name": "VIP", "threshold": 1000, "multiplier": "1", "benefits": []},
    ],
}


@pytest.fixture
def at() -> Iterator[Any]:
    """Move the clock: `with at(day)` makes requests happen `day` days after T0."""

    def move(days: float) -> Any:
        return clock.frozen(T0 + timedelta(days=days))

    return move


def setup(api: Any, **ladder: Any) -> None:
    r = api.put("/v1/tiers", {**LADDER, **ladder})
    assert r.status_code == 200, r.text
    r = api.post("/v1/earning-rules", {"name": "1 per 10", "kind": "spend", "points": 1, "per_amount": "10"})
    assert r.status_code == 201, r.text


def buy(api: Any, member: dict[str, Any], total: str) -> dict[str, Any]:
    r = api.post("/v1/transactions", {"external_id": uuid.uuid4().hex, "member_id": member["id"], "total": total})
    assert r.status_code == 201, r.text
    return dict(r.json())


def run(api: Any, as_of: datetime) -> dict[str, Any]:
    r = api.post("/v1/jobs/requalify-tiers/run", {"as_of": as_of.isoformat()})
    assert r.status_code == 200, r.text
    return dict(r.json()["result"])


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def tier(api: Any, member: dict[str, Any]) -> str:
    return str(api.get(f"/v1/members/{member['id']}").json()["tier"]["code"])


def history(api: Any, member: dict[str, Any]) -> list[tuple[str | None, str, str, int, datetime]]:
    rows = api.db.read(
        lambda s: s.execute(
            select(
                TierChange.from_code,
                TierChange.to_code,
                TierChange.reason,
                TierChange.metric_value,
                TierChange.changed_at,
            )
            .where(TierChange.member_id == uuid.UUID(member["id"]))
            .order_by(TierChange.changed_at, TierChange.id)
        ).all()
    )
    return [tuple(r) for r in rows]


def tiers_and_history(api: Any) -> tuple[list[Any], list[Any]]:
    def read(s: Any) -> tuple[list[Any], list[Any]]:
        members = s.execute(select(Member.id, Member.tier_code).order_by(Member.id)).all()
        changes = s.execute(select(TierChange.member_id, TierChange.to_code, TierChange.changed_at)).all()
        return [tuple(m) for m in members], sorted(tuple(c) for c in changes)

    return api.db.read(read)


def test_a_new_ladder_upgrades_at_once_and_requalification_finds_nothing_more(api, at):
    with at(0):
        r = api.post("/v1/earning-rules", {"name": "spend", "kind": "spend", "points": 1, "per_amount": "10"})
        assert r.status_code == 201, r.text
        m = api.enrol()
        quiet = api.enrol()
        buy(api, m, "1500.00")  # 150 points under the shipped one-tier ladder
    with at(1):
        assert api.put("/v1/tiers", LADDER).status_code == 200
        assert tier(api, m) == "regular"  # upgrades are immediate, a new ladder's too
    assert run(api, day(1)) == {"members": 2, "upgraded": 0, "downgraded": 0}
    assert tier(api, m) == "regular" and tier(api, quiet) == "new"
    assert history(api, m) == [("new", "regular", "configuration", 150, day(1))]
    assert history(api, quiet) == []


def test_downgrade_once_the_window_has_passed_and_a_rerun_changes_nothing(api, at):
    with at(0):
        setup(api)
        m = api.enrol()
        assert buy(api, m, "1200.00")["tier"]["code"] == "regular"  # immediate upgrade
    assert run(api, day(10)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(30)) == {"members": 1, "upgraded": 0, "downgraded": 0}  # the window's first instant
    assert tier(api, m) == "regular"
    assert run(api, day(31)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert tier(api, m) == "new"
    assert history(api, m) == [
        ("new", "regular", "purchase", 120, day(0)),
        ("regular", "new", "requalification", 0, day(31)),
    ]
    before = tiers_and_history(api)
    assert run(api, day(31)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(45)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert tiers_and_history(api) == before
    member = api.get(f"/v1/members/{m['id']}").json()
    assert member["tier"] == {"code": "new", "name": "New"}


def test_grace_keeps_the_tier_for_its_days_after_it_was_reached(api, at):
    with at(0):
        setup(api, grace_days=60)
        assert api.get("/v1/tiers").json()["grace_days"] == 60
        m = api.enrol()
        buy(api, m, "1200.00")
    assert run(api, day(31)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(59.9)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert tier(api, m) == "regular"
    assert run(api, day(60)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert tier(api, m) == "new"
    # reached again by a purchase on day 70: the grace counts from then, not from day 0
    with at(70):
        assert buy(api, m, "1000.00")["tier"]["code"] == "regular"
    assert run(api, day(129)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(130)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert [h[2] for h in history(api, m)] == ["purchase", "requalification", "purchase", "requalification"]


def test_members_fall_to_the_tier_they_still_reach(api, at):
    with at(0):
        setup(api, grace_days=10)
        m = api.enrol()
        assert buy(api, m, "10000.00")["tier"]["code"] == "vip"  # 1000 points
    with at(20):
        buy(api, m, "1500.00")  # 150 points, still inside the window on day 35
    assert run(api, day(35)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert tier(api, m) == "regular"
    assert history(api, m)[-1] == ("vip", "regular", "requalification", 150, day(35))
    assert run(api, day(51)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert tier(api, m) == "new"


def test_grace_never_holds_back_an_upgrade(api, at):
    with at(0):
        setup(api, grace_days=100)
        m = api.enrol()
        assert buy(api, m, "1200.00")["tier"]["code"] == "regular"
    with at(1):
        lower = [LADDER["tiers"][0], {**LADDER["tiers"][1], "threshold": 50}, {**LADDER["tiers"][2], "threshold": 100}]
        assert api.put("/v1/tiers", {**LADDER, "grace_days": 100, "tiers": lower}).status_code == 200
    # the lower bar lifts her at once, grace or not; requalification has nothing left to do
    assert history(api, m)[-1] == ("regular", "vip", "configuration", 120, day(1))
    assert run(api, day(2)) == {"members": 1, "upgraded": 0, "downgraded": 0}


def test_members_without_a_history_fall_to_the_base_tier_with_grace_from_enrolment(api, at):
    with at(0):
        setup(api, grace_days=5)
        m = api.enrol()
    # a member put on a tier directly (as the CSV import does), with nothing to show for it
    api.db.write(lambda s: s.execute(update(Member).where(Member.id == uuid.UUID(m["id"])).values(tier_code="vip")))
    assert run(api, day(4)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(5)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert history(api, m) == [("vip", "new", "requalification", 0, day(5))]


def test_spend_metric_is_net_of_returns(api, at):
    with at(0):
        setup(api, metric="spend")
        m = api.enrol()
        t = buy(api, m, "1200.00")
        assert t["tier"]["code"] == "vip"  # 1200.00 spent, threshold 1000
        r = api.post(f"/v1/transactions/{t['id']}/returns", {"external_id": "r1", "amount": "300.00"})
        assert r.status_code == 201, r.text
        assert tier(api, m) == "vip"  # a return never downgrades by itself
    assert run(api, day(1)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert history(api, m)[-1] == ("vip", "regular", "requalification", 90000, day(1))  # minor units


def test_visits_metric_and_blocked_members(api, at):
    ladder = {
        "metric": "visits",
        "window_days": 7,
        "tiers": [
            {"code": "new", "name": "New", "threshold": 0},
            {"code": "regular", "name": "Regular", "threshold": 2},
        ],
    }
    with at(0):
        assert api.put("/v1/tiers", ladder).status_code == 200
        m = api.enrol()
        buy(api, m, "1.00")
        assert buy(api, m, "1.00")["tier"]["code"] == "regular"
        assert api.post(f"/v1/members/{m['id']}/block", {"reason": "review"}, role="agent").status_code == 200
    assert run(api, day(7)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert run(api, day(8)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert tier(api, m) == "new"


def test_window_ends_at_as_of(api, at):
    """Points earned after `as_of` do not count when the job is run for an earlier instant."""
    with at(0):
        setup(api, window_days=None)
        m = api.enrol()
        buy(api, m, "1200.00")
    assert run(api, day(-1)) == {"members": 1, "upgraded": 0, "downgraded": 1}
    assert run(api, day(1)) == {"members": 1, "upgraded": 1, "downgraded": 0}
    assert [h[:3] for h in history(api, m)] == [
        ("regular", "new", "requalification"),  # dated day -1
        ("new", "regular", "purchase"),
        ("new", "regular", "requalification"),
    ]


def test_many_members_in_chunks(api, at, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(requalify, "CHUNK", 2)
    with at(0):
        setup(api)
        members = [api.enrol() for _ in range(5)]
        for m, total in zip(members, ("0.00", "1200.00", "15000.00", "1200.00", "0.00"), strict=True):
            buy(api, m, total)
    with at(20):
        buy(api, members[3], "1000.00")  # still regular on day 31
    # a new ladder without vip: its member lands on the base tier and rises by her metric at once
    with at(21):
        r = api.put("/v1/tiers", {**LADDER, "tiers": [LADDER["tiers"][0], {**LADDER["tiers"][1], "threshold": 50}]})
        assert r.status_code == 200
    assert [tier(api, m) for m in members] == ["new", "regular", "regular", "regular", "new"]
    assert run(api, day(22)) == {"members": 5, "upgraded": 0, "downgraded": 0}
    assert [tier(api, m) for m in members] == ["new", "regular", "regular", "regular", "new"]
    assert run(api, day(31)) == {"members": 5, "upgraded": 0, "downgraded": 2}
    assert [tier(api, m) for m in members] == ["new", "new", "new", "regular", "new"]
    assert run(api, day(31)) == {"members": 5, "upgraded": 0, "downgraded": 0}


def test_from_the_command_line(api, at, db_url):
    with at(0):
        setup(api)
        m = api.enrol()
        buy(api, m, "1200.00")
    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    result = runner.invoke(cli_app, ["jobs", "run", "requalify-tiers", "--as-of", day(31).isoformat()], env=env)
    assert result.exit_code == 0, result.output
    assert "requalify-tiers: members 1, upgraded 0, downgraded 1" in result.stdout
    assert tier(api, m) == "new"
    result = runner.invoke(cli_app, ["jobs", "run", "requalify-tiers", "--as-of", day(31).isoformat()], env=env)
    assert "requalify-tiers: members 1, upgraded 0, downgraded 0" in result.stdout


def test_the_ladder_shows_grace_days_only_when_given(api):
    assert api.put("/v1/tiers", LADDER).status_code == 200
    assert api.get("/v1/tiers").json() == LADDER
    assert api.put("/v1/tiers", {**LADDER, "grace_days": 0}).json() == {**LADDER, "grace_days": 0}
    assert api.get("/v1/tiers").json() == {**LADDER, "grace_days": 0}
    r = api.put("/v1/tiers", {**LADDER, "grace_days": -1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grace_days"
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    assert "grace_days" in schema["LadderIn"]["properties"]
    assert "requalify-tiers" in schema["LadderIn"]["properties"]["grace_days"]["description"]


def test_the_shipped_one_tier_ladder_moves_nobody(api):
    m = api.enrol()
    buy(api, m, "100.00")
    assert run(api, day(0)) == {"members": 1, "upgraded": 0, "downgraded": 0}
    assert tier(api, m) == "member"


def test_a_purchase_between_the_scan_and_the_move_is_respected(api, db, at, monkeypatch: pytest.MonkeyPatch):
    """The scan picks members to move; each batch checks again under the account locks."""
    monkeypatch.setattr(requalify, "CHUNK", 1)
    with at(0):
        setup(api)
        members = [api.enrol(), api.enrol()]
        for m in members:
            buy(api, m, "1200.00")
    bought: list[int] = []

    def meanwhile(_: int) -> None:  # after the first batch is moved, both members buy again
        if not bought:
            bought.extend(buy(api, m, "1200.00")["points_earned"] for m in members)

    with at(30.5):
        result = requalify.requalify_tiers(db, day(31), meanwhile)
    assert bought == [120, 120]
    # one was moved down before the purchases (and the purchase took them up again); the other
    # was found again under the lock with its new points, and stayed
    assert result == {"members": 2, "upgraded": 0, "downgraded": 1}
    assert [tier(api, m) for m in members] == ["regular", "regular"]
    reasons = sorted(h[2] for m in members for h in history(api, m))
    assert reasons == ["purchase", "purchase", "purchase", "requalification"]
