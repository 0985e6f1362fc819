"""Segments: definitions, validation, the set-wise refresh job, and where membership shows.

Most tests build the same small population at known instants (the clock frozen while members
enrol and buy), refresh as of T0 or earlier, and compare each segment with the members worked
out by hand below.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.kit import clock
from patron.members.models import Member
from patron.segments.models import SegmentMember
from tests.conftest import TEST_SECRET
from tests.helpers import assert_problem, dump

T0 = datetime.now(UTC).replace(microsecond=0)


def days_ago(n: int) -> datetime:
    return T0 - timedelta(days=n)


LADDER = {
    "metric": "spend",
    "window_days": None,
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 3000},
        {"code": "gold", "name": "Gold", "threshold": 50000},
    ],
}

# name: (days ago enrolled, channel, birth date, attributes, purchases as (days ago, category, RUB))
PEOPLE: dict[str, tuple[int, str, str | None, dict[str, str], list[tuple[int, str, int]]]] = {
    "ann": (400, "pos", "1990-03-15", {"car_make": "BMW"}, [(300, "tyres", 30000), (100, "oil_change", 20000)]),
    "bob": (200, "web", "1985-12-01", {"car_make": "Lada"}, [(150, "wash", 2000), (20, "wash", 3000)]),
    "cat": (30, "mobile", None, {}, [(5, "oil_change", 1500)]),
    "dan": (10, "call_center", "2000-03-01", {}, []),
    "eve": (500, "import", "1979-07-20", {"car_make": "BMW"}, [(450, "repair", 80000)]),
    # Erased: matches nearly everything, and is never in a segment.
    "zed": (400, "pos", "1990-03-15", {"car_make": "BMW"}, [(10, "tyres", 100000)]),
}
# ann also has diagnostics 15,000 ten days ago; bob returns 1,000 of his 3,000 a day after buying.
#
# As of T0:        ann     bob     cat    dan    eve
# spend 365 d      65000   4000    1500   0      0       (eve: 80000 all time)
# spend 30 d       15000   2000    1500   0      0
# visits 365 d     3       2       1      0      0       (eve: 1 all time)
# visits 30 d      1       1       1      0      0
# points 365 d     650     40      15     0      0       (1 per 100 RUB; bob's return reverses 10)
# last visit       10      20      5      never  450     days ago
# enrolled         400     200     30     10     500     days ago
# tier             gold    silver  member member gold


def enrol_at(api: Any, when: datetime, **fields: Any) -> dict[str, Any]:
    with clock.frozen(when):
        return api.enrol(**fields)


def buy(api: Any, member_id: str, when: datetime, category: str, rub: int, ext: str) -> dict[str, Any]:
    item = {"sku": f"{category}-1", "category": category, "quantity": "1", "unit_price": f"{rub}.00"}
    with clock.frozen(when):
        r = api.post("/v1/transactions", {"external_id": ext, "member_id": member_id, "items": [item]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def population(api: Any) -> dict[str, str]:
    """The members of the table above; returns name → member id."""
    with clock.frozen(days_ago(600)):
        assert api.put("/v1/tiers", LADDER).status_code == 200
        r = api.post("/v1/earning-rules", {"name": "1 per 100", "kind": "spend", "points": 1, "per_amount": "100"})
        assert r.status_code == 201, r.text
    ids: dict[str, str] = {}
    bought: dict[str, str] = {}
    for name, (enrolled, channel, birth, attrs, purchases) in PEOPLE.items():
        fields: dict[str, Any] = {"first_name": name.title(), "channel": channel, "attributes": attrs}
        if birth:
            fields["birth_date"] = birth
        ids[name] = enrol_at(api, days_ago(enrolled), **fields)["id"]
        for n, (ago, category, rub) in enumerate(purchases):
            bought[f"{name}-{n}"] = buy(api, ids[name], days_ago(ago), category, rub, f"{name}-{n}")["id"]
    buy(api, ids["ann"], days_ago(10), "diagnostics", 15000, "ann-d")
    with clock.frozen(days_ago(19)):
        r = api.post(f"/v1/transactions/{bought['bob-1']}/returns", {"external_id": "bob-r", "amount": "1000.00"})
    assert r.status_code == 201, r.text
    assert r.json()["points_reversed"] == 10
    api.db.write(lambda s: s.execute(update(Member).where(Member.id == _uuid(ids["zed"])).values(status="erased")))
    return ids


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def refresh(api: Any, as_of: datetime = T0) -> dict[str, Any]:
    r = api.post("/v1/jobs/refresh-segments/run", {"as_of": as_of.isoformat()})
    assert r.status_code == 200, r.text
    return dict(r.json()["result"])


def segment(api: Any, code: str, conditions: list[dict[str, Any]], match: str = "all", **kw: Any) -> dict[str, Any]:
    r = api.post("/v1/segments", {"code": code, "name": code.title(), "match": match, "conditions": conditions}, **kw)
    assert r.status_code == 201, r.text
    return dict(r.json())


def names_in(api: Any, code: str, ids: dict[str, str]) -> set[str]:
    r = api.get(f"/v1/segments/{code}/members?limit=500", role="analyst")
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {v: k for k, v in ids.items()}
    found = {by_id[m["id"]] for m in body["items"]}
    assert body["total"] == len(found)
    return found


def c(field: str, op: str, value: Any, window: int | None = None) -> dict[str, Any]:
    out = {"field": field, "op": op, "value": value}
    if window is not None:
        out["window_days"] = window
    return out


# (conditions, match, expected members as of T0)
CASES: list[tuple[list[dict[str, Any]], str, set[str]]] = [
    ([c("spend", "gte", "65000.00", 365)], "all", {"ann"}),
    ([c("spend", "gt", "4000.00", 365)], "all", {"ann"}),
    ([c("spend", "lte", "4000.00", 365)], "all", {"bob", "cat", "dan", "eve"}),
    ([c("spend", "lt", "1500.00", 365)], "all", {"dan", "eve"}),
    ([c("spend", "eq", "4000.00", 365)], "all", {"bob"}),  # net of the return
    ([c("spend", "in", ["1500.00", "80000.00"])], "all", {"cat", "eve"}),
    ([c("spend", "gte", "70000.00")], "all", {"eve"}),
    ([c("spend", "gte", "2000.00", 30)], "all", {"ann", "bob"}),
    ([c("visits", "gte", 2, 365)], "all", {"ann", "bob"}),
    ([c("visits", "lt", 1, 365)], "all", {"dan", "eve"}),
    ([c("visits", "eq", 1, 30)], "all", {"ann", "bob", "cat"}),
    ([c("visits", "in", [0, 3], 365)], "all", {"ann", "dan", "eve"}),
    ([c("visits", "gt", 0)], "all", {"ann", "bob", "cat", "eve"}),
    ([c("visits", "lte", 0)], "all", {"dan"}),
    ([c("points_earned", "gte", 650, 365)], "all", {"ann"}),
    ([c("points_earned", "lte", 40, 365)], "all", {"bob", "cat", "dan", "eve"}),
    ([c("points_earned", "eq", 40, 365)], "all", {"bob"}),
    ([c("points_earned", "gt", 700)], "all", {"eve"}),
    ([c("points_earned", "lt", 15, 365)], "all", {"dan", "eve"}),
    ([c("points_earned", "in", [15, 150], 30)], "all", {"ann", "cat"}),
    ([c("days_since_last_visit", "gte", 20)], "all", {"bob", "dan", "eve"}),  # dan never came
    ([c("days_since_last_visit", "gt", 20)], "all", {"dan", "eve"}),
    ([c("days_since_last_visit", "lte", 10)], "all", {"ann", "cat"}),
    ([c("days_since_last_visit", "lt", 10)], "all", {"cat"}),
    ([c("days_since_last_visit", "eq", 20)], "all", {"bob"}),
    ([c("days_since_last_visit", "in", [5, 450])], "all", {"cat", "eve"}),
    ([c("days_since_enrolled", "gte", 400)], "all", {"ann", "eve"}),
    ([c("days_since_enrolled", "gt", 400)], "all", {"eve"}),
    ([c("days_since_enrolled", "lte", 30)], "all", {"cat", "dan"}),
    ([c("days_since_enrolled", "lt", 30)], "all", {"dan"}),
    ([c("days_since_enrolled", "eq", 200)], "all", {"bob"}),
    ([c("days_since_enrolled", "in", [10, 30])], "all", {"cat", "dan"}),
    ([c("tier", "eq", "gold")], "all", {"ann", "eve"}),
    ([c("tier", "in", ["silver", "member"])], "all", {"bob", "cat", "dan"}),
    ([c("tier", "gte", "silver")], "all", {"ann", "bob", "eve"}),
    ([c("tier", "gt", "silver")], "all", {"ann", "eve"}),
    ([c("tier", "lte", "silver")], "all", {"bob", "cat", "dan"}),
    ([c("tier", "lt", "silver")], "all", {"cat", "dan"}),
    ([c("category", "eq", "oil_change", 365)], "all", {"ann", "cat"}),
    ([c("category", "eq", "oil_change", 30)], "all", {"cat"}),
    ([c("category", "in", ["wash", "diagnostics"], 365)], "all", {"ann", "bob"}),
    ([c("category", "eq", "repair")], "all", {"eve"}),
    ([c("category", "eq", "repair", 365)], "all", set()),
    ([c("birthday_month", "eq", 3)], "all", {"ann", "dan"}),
    ([c("birthday_month", "in", [7, 12])], "all", {"bob", "eve"}),
    ([c("birthday_month", "gte", 7)], "all", {"bob", "eve"}),
    ([c("birthday_month", "gt", 7)], "all", {"bob"}),
    ([c("birthday_month", "lte", 3)], "all", {"ann", "dan"}),
    ([c("birthday_month", "lt", 3)], "all", set()),
    ([c("channel", "eq", "web")], "all", {"bob"}),
    ([c("channel", "in", ["mobile", "call_center"])], "all", {"cat", "dan"}),
    ([c("attribute.car_make", "eq", "BMW")], "all", {"ann", "eve"}),
    ([c("attribute.car_make", "in", ["Lada", "Kia"])], "all", {"bob"}),
    ([c("attribute.colour", "eq", "red")], "all", set()),
    ([c("channel", "eq", "web"), c("birthday_month", "eq", 3)], "any", {"ann", "bob", "dan"}),
    ([c("attribute.car_make", "eq", "BMW"), c("visits", "gte", 1, 365)], "all", {"ann"}),
    ([c("category", "eq", "tyres", 365), c("days_since_last_visit", "gt", 400)], "any", {"ann", "dan", "eve"}),
    ([c("spend", "gte", "1000.00", 365), c("spend", "lt", "5000.00", 365)], "all", {"bob", "cat"}),
    ([c("visits", "lt", 1, 365), c("tier", "eq", "gold")], "any", {"ann", "dan", "eve"}),
]


def test_every_field_and_op_selects_exactly_the_members_worked_out_by_hand(api):
    ids = population(api)
    for n, (conditions, match, _) in enumerate(CASES):
        segment(api, f"case-{n}", conditions, match)
    result = refresh(api)
    assert result["segments"] == len(CASES) + 3
    got = {n: names_in(api, f"case-{n}", ids) for n in range(len(CASES))}
    want = {n: expected for n, (_, _, expected) in enumerate(CASES)}
    assert got == want
    # The shipped segments on the same people.
    assert names_in(api, "vip", ids) == {"ann"}
    assert names_in(api, "regular", ids) == {"bob"}
    assert names_in(api, "new", ids) == {"cat", "dan"}


def test_windows_end_at_as_of(api):
    ids = population(api)
    cases = {
        "big": [c("spend", "gte", "50000.00", 365)],
        "once": [c("visits", "eq", 1, 365)],
        "recent": [c("days_since_last_visit", "lte", 50)],
        "tenure": [c("days_since_enrolled", "eq", 150)],
        "earner": [c("points_earned", "gte", 500, 365)],
        "oil": [c("category", "eq", "oil_change", 60)],
    }
    for code, conditions in cases.items():
        segment(api, code, conditions)
    # Fifty days back: ann's diagnostics, bob's second wash and the return have not happened yet,
    # and cat and dan have not enrolled.
    refresh(api, days_ago(50))
    assert {code: names_in(api, code, ids) for code in cases} == {
        "big": {"ann"},
        "once": {"bob"},
        "recent": {"ann"},
        "tenure": {"bob"},
        "earner": {"ann"},
        "oil": {"ann"},
    }
    assert names_in(api, "new", ids) == set()
    assert names_in(api, "vip", ids) == {"ann"}
    refresh(api)
    assert {code: names_in(api, code, ids) for code in cases} == {
        "big": {"ann"},
        "once": {"cat"},
        "recent": {"ann", "bob", "cat"},
        "tenure": set(),
        "earner": {"ann"},
        "oil": {"cat"},
    }
    # The shortest window that still holds ann's oil change a hundred days ago.
    r = api.patch("/v1/segments/oil", {"conditions": [c("category", "eq", "oil_change", 100)]})
    assert r.status_code == 200, r.text
    assert names_in(api, "oil", ids) == {"cat"}  # unchanged until the next refresh
    refresh(api)
    assert names_in(api, "oil", ids) == {"ann", "cat"}


def test_a_fresh_programme_ships_vip_regular_and_new(api):
    r = api.get("/v1/segments", role="analyst")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert [s["code"] for s in body["items"]] == ["new", "regular", "vip"]
    by_code = {s["code"]: s for s in body["items"]}
    for s in body["items"]:
        assert s["system"] is True
        assert s["size"] is None and s["refreshed_at"] is None
        assert s["match"] == "all"
    assert by_code["vip"]["conditions"] == [
        {"field": "visits", "op": "gte", "value": 2, "window_days": 365},
        {"field": "spend", "op": "gte", "value": "50000.00", "window_days": 365},
    ]
    assert by_code["regular"]["conditions"] == [
        {"field": "visits", "op": "gte", "value": 2, "window_days": 365},
        {"field": "spend", "op": "lt", "value": "50000.00", "window_days": 365},
    ]
    assert by_code["new"]["conditions"] == [
        {"field": "days_since_enrolled", "op": "lte", "value": 90, "window_days": None},
        {"field": "visits", "op": "lte", "value": 1, "window_days": None},
    ]
    assert api.get("/v1/segments/vip").json() == by_code["vip"]
    # Nobody yet: membership comes from the refresh.
    m = api.enrol()
    assert m["segments"] == []
    assert api.get("/v1/segments/new/members").json() == {"items": [], "next_cursor": None, "total": 0}
    refresh(api, datetime.now(UTC))
    assert api.get(f"/v1/members/{m['id']}").json()["segments"] == ["new"]


def test_sizes_are_recorded_and_a_repeated_refresh_changes_no_membership(api):
    ids = population(api)
    first = refresh(api)
    assert first == {"segments": 3, "memberships": 4, "joined": 4, "left": 0}
    members_before = dump(api.db)["segment_members"]
    again = refresh(api)
    assert again == {"segments": 3, "memberships": 4, "joined": 0, "left": 0}
    assert dump(api.db)["segment_members"] == members_before

    # bob spends his way into VIP a day later.
    buy(api, ids["bob"], T0 + timedelta(hours=1), "repair", 60000, "bob-big")
    later = T0 + timedelta(days=1)
    assert refresh(api, later) == {"segments": 3, "memberships": 4, "joined": 1, "left": 1}
    assert names_in(api, "vip", ids) == {"ann", "bob"}
    assert names_in(api, "regular", ids) == set()

    sizes = api.get("/v1/segments/vip/sizes", role="analyst").json()
    assert sizes["next_cursor"] is None
    assert [(s["size"], s["joined"], s["left"]) for s in sizes["items"]] == [(2, 1, 0), (1, 0, 0), (1, 1, 0)]
    assert [datetime.fromisoformat(s["measured_at"]) for s in sizes["items"]] == [later, T0, T0]
    regular = api.get("/v1/segments/regular/sizes?limit=1").json()
    assert [(s["size"], s["joined"], s["left"]) for s in regular["items"]] == [(0, 0, 1)]
    older = api.get(f"/v1/segments/regular/sizes?limit=5&cursor={regular['next_cursor']}").json()
    assert [(s["size"], s["joined"], s["left"]) for s in older["items"]] == [(1, 0, 0), (1, 1, 0)]

    listed = {s["code"]: s for s in api.get("/v1/segments").json()["items"]}
    assert {code: s["size"] for code, s in listed.items()} == {"new": 2, "regular": 0, "vip": 2}
    assert {datetime.fromisoformat(s["refreshed_at"]) for s in listed.values()} == {later}


def test_members_list_pages_with_a_total_and_skips_erased_members(api):
    ids = population(api)
    segment(api, "bmw-or-web", [c("attribute.car_make", "eq", "BMW"), c("channel", "eq", "web")], "any")
    refresh(api)
    first = api.get("/v1/segments/bmw-or-web/members?limit=2", role="marketer").json()
    assert first["total"] == 3
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get(f"/v1/segments/bmw-or-web/members?limit=2&cursor={first['next_cursor']}").json()
    assert rest["total"] == 3 and rest["next_cursor"] is None
    seen = [m["id"] for m in first["items"] + rest["items"]]
    # Newest enrolment first, like the members search.
    assert seen == sorted([ids["ann"], ids["bob"], ids["eve"]], key=_uuid, reverse=True)
    ann = next(m for m in first["items"] + rest["items"] if m["id"] == ids["ann"])
    assert ann["segments"] == ["bmw-or-web", "vip"]
    assert ann["tier"]["code"] == "gold"
    # Erased after the refresh: gone from the list at once.
    api.db.write(lambda s: s.execute(update(Member).where(Member.id == _uuid(ids["eve"])).values(status="erased")))
    after = api.get("/v1/segments/bmw-or-web/members").json()
    assert after["total"] == 2
    assert {m["id"] for m in after["items"]} == {ids["ann"], ids["bob"]}
    assert_problem(api.get("/v1/segments/bmw-or-web/members?cursor=%%%"), 422, "validation_error", "cursor")


def test_the_member_object_shows_the_segments_of_the_last_refresh(api):
    ids = population(api)
    segment(api, "bmw", [c("attribute.car_make", "eq", "BMW")])
    assert api.get(f"/v1/members/{ids['ann']}", role="cashier").json()["segments"] == []
    refresh(api)
    assert api.get(f"/v1/members/{ids['ann']}", role="cashier").json()["segments"] == ["bmw", "vip"]
    found = api.get("/v1/members?q=Ann").json()["items"]
    assert [m["segments"] for m in found] == [["bmw", "vip"]]
    # A change of data shows only after the next refresh.
    api.patch(f"/v1/members/{ids['ann']}", {"attributes": {"car_make": "Kia"}})
    assert api.get(f"/v1/members/{ids['ann']}").json()["segments"] == ["bmw", "vip"]
    refresh(api)
    assert api.get(f"/v1/members/{ids['ann']}").json()["segments"] == ["vip"]


def test_an_earning_rule_restricted_to_a_segment_earns_only_for_its_members(api):
    ids = population(api)
    r = api.post(
        "/v1/earning-rules",
        {"name": "VIP visit", "kind": "visit", "points": 100, "conditions": {"segments": ["vip"]}},
        role="marketer",
    )
    assert r.status_code == 201, r.text
    r = api.post(
        "/v1/earning-rules",
        {
            "name": "VIP survey",
            "kind": "event",
            "event_type": "survey",
            "points": 7,
            "conditions": {"segments": ["vip"]},
        },
    )
    assert r.status_code == 201, r.text

    def earned(name: str, ext: str) -> int:
        return int(buy(api, ids[name], datetime.now(UTC), "wash", 500, ext)["points_earned"])

    assert earned("ann", "a1") == 5  # before any refresh nobody is in vip
    refresh(api, datetime.now(UTC))
    assert earned("ann", "a2") == 105
    assert earned("bob", "b1") == 5
    survey = {"type": "survey", "member_id": ids["ann"], "external_id": "e1"}
    assert api.post("/v1/events", survey).json()["points_earned"] == 7
    survey = {"type": "survey", "member_id": ids["bob"], "external_id": "e2"}
    assert api.post("/v1/events", survey).json()["points_earned"] == 0


def test_validation_errors_name_the_field(api):
    def refused(body: dict[str, Any], field: str, method: str = "post", path: str = "/v1/segments") -> None:
        r = api.request(method.upper(), path, json=body)
        assert_problem(r, 422, "validation_error", field)

    def cond(*conditions: dict[str, Any], match: str = "all") -> dict[str, Any]:
        return {"code": "x", "name": "X", "match": match, "conditions": list(conditions)}

    refused(cond(c("wealth", "gte", 1)), "conditions.0.field")
    refused(cond(c("attribute.", "eq", "x")), "conditions.0.field")
    refused(cond(c("attribute.a b", "eq", "x")), "conditions.0.field")
    refused(cond(c("visits", "gte", 1), c("visits", "between", 1)), "conditions.1.op")
    refused(cond(c("category", "gte", "tyres")), "conditions.0.op")
    refused(cond(c("channel", "lt", "web")), "conditions.0.op")
    refused(cond(c("attribute.car_make", "gt", "A")), "conditions.0.op")
    refused(cond(c("spend", "gte", 5000)), "conditions.0.value")  # money is a decimal string
    refused(cond(c("spend", "gte", "5000.001")), "conditions.0.value")  # finer than kopecks
    refused(cond(c("spend", "gte", "-1.00")), "conditions.0.value")
    refused(cond(c("spend", "gte", "lots")), "conditions.0.value")
    refused(cond(c("visits", "gte", "2")), "conditions.0.value")
    refused(cond(c("visits", "gte", True)), "conditions.0.value")
    refused(cond(c("visits", "gte", 1.5)), "conditions.0.value")
    refused(cond(c("visits", "gte", -1)), "conditions.0.value")
    refused(cond(c("days_since_enrolled", "gte", 10**6)), "conditions.0.value")
    refused(cond(c("birthday_month", "eq", 13)), "conditions.0.value")
    refused(cond(c("birthday_month", "in", [1, 0])), "conditions.0.value.1")
    refused(cond(c("tier", "eq", "platinum")), "conditions.0.value")
    refused(cond(c("channel", "eq", "fax")), "conditions.0.value")
    refused(cond(c("category", "eq", "")), "conditions.0.value")
    refused(cond(c("category", "eq", None)), "conditions.0.value")
    refused(cond(c("visits", "in", 2)), "conditions.0.value")
    refused(cond(c("visits", "in", [])), "conditions.0.value")
    refused(cond(c("visits", "eq", [1, 2])), "conditions.0.value")
    refused(cond(c("channel", "eq", "web", 30)), "conditions.0.window_days")
    refused(cond(c("visits", "gte", 1, 0)), "conditions.0.window_days")
    refused(cond({"field": "visits", "op": "gte"}), "conditions.0.value")
    refused(cond(c("visits", "gte", 1), match="some"), "match")
    refused(cond(), "conditions")
    refused({"code": "bad code", "name": "X", "conditions": [c("visits", "gte", 1)]}, "code")
    refused({"code": "x", "name": "", "conditions": [c("visits", "gte", 1)]}, "name")
    refused({"code": "x", "name": "X", "conditions": [c("visits", "gte", 1)], "extra": 1}, "extra")
    # Every problem at once.
    r = api.post("/v1/segments", cond(c("visits", "gte", "1"), c("tier", "gte", "nope"), c("channel", "eq", 5)))
    fields = [e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]]
    assert fields == ["conditions.0.value", "conditions.1.value", "conditions.2.value"]
    refused({"conditions": [c("nope", "eq", 1)]}, "conditions.0.field", "patch", "/v1/segments/vip")
    refused({"conditions": []}, "conditions", "patch", "/v1/segments/vip")
    refused({"name": None}, "name", "patch", "/v1/segments/vip")
    # Nothing was created or changed.
    assert [s["code"] for s in api.get("/v1/segments").json()["items"]] == ["new", "regular", "vip"]
    assert api.get("/v1/segments/vip").json()["updated_at"] == api.get("/v1/segments/vip").json()["created_at"]

    assert api.post("/v1/segments", cond(c("visits", "gte", 1))).status_code == 201
    assert_problem(api.post("/v1/segments", cond(c("visits", "gte", 2))), 409, "segment_exists")
    assert_problem(api.post("/v1/segments", {**cond(c("visits", "gte", 2)), "code": "vip"}), 409, "segment_exists")


def test_roles(api):
    body = {"code": "bmw", "name": "BMW", "conditions": [c("attribute.car_make", "eq", "BMW")]}
    for role in ("cashier", "agent", "analyst"):
        assert_problem(api.post("/v1/segments", body, role=role), 403, "forbidden")
        assert_problem(api.patch("/v1/segments/vip", {"name": "V"}, role=role), 403, "forbidden")
        assert_problem(api.delete("/v1/segments/vip", role=role), 403, "forbidden")
    for role in ("cashier", "agent"):
        for path in ("/v1/segments", "/v1/segments/vip", "/v1/segments/vip/members", "/v1/segments/vip/sizes"):
            assert_problem(api.get(path, role=role), 403, "forbidden")
    for role in ("analyst", "marketer", "admin"):
        for path in ("/v1/segments", "/v1/segments/vip", "/v1/segments/vip/members", "/v1/segments/vip/sizes"):
            assert api.get(path, role=role).status_code == 200
    assert api.post("/v1/segments", body, role="marketer").status_code == 201
    assert api.patch("/v1/segments/bmw", {"name": "Bavarian"}, role="admin").json()["name"] == "Bavarian"
    assert api.delete("/v1/segments/bmw", role="marketer").status_code == 204
    assert_problem(api.post("/v1/jobs/refresh-segments/run", {}, role="marketer"), 403, "forbidden")
    assert_problem(api.get("/v1/segments", role=None), 401, "unauthorized")


def test_edit_and_delete(api):
    ids = population(api)
    refresh(api)
    # The shipped segments can be edited, not deleted.
    r = api.patch(
        "/v1/segments/vip",
        {"name": "Gold club", "description": "Big spenders", "conditions": [c("spend", "gte", "60000.00", 365)]},
        role="marketer",
    )
    assert r.status_code == 200, r.text
    vip = r.json()
    assert (vip["name"], vip["description"], vip["match"], vip["system"]) == ("Gold club", "Big spenders", "all", True)
    assert vip["conditions"] == [{"field": "spend", "op": "gte", "value": "60000.00", "window_days": 365}]
    assert vip["size"] == 1 and vip["updated_at"] > vip["created_at"]
    assert_problem(api.delete("/v1/segments/vip"), 409, "segment_protected")

    segment(api, "bmw", [c("attribute.car_make", "eq", "BMW")])
    r = api.post(
        "/v1/earning-rules",
        {"name": "BMW bonus", "kind": "visit", "points": 10, "conditions": {"segments": ["bmw"]}},
    )
    rule_id = r.json()["id"]
    refresh(api)
    assert names_in(api, "bmw", ids) == {"ann", "eve"}
    before = dump(api.db)
    assert_problem(api.delete("/v1/segments/bmw"), 409, "segment_in_use")
    assert dump(api.db) == before
    assert api.delete(f"/v1/earning-rules/{rule_id}").status_code == 204
    assert api.delete("/v1/segments/bmw").status_code == 204
    assert_problem(api.get("/v1/segments/bmw"), 404, "not_found")
    assert_problem(api.get("/v1/segments/bmw/members"), 404, "not_found")
    assert_problem(api.get("/v1/segments/bmw/sizes"), 404, "not_found")
    assert_problem(api.patch("/v1/segments/bmw", {"name": "B"}), 404, "not_found")
    assert_problem(api.delete("/v1/segments/bmw"), 404, "not_found")
    rows = api.db.read(lambda s: s.scalars(select(SegmentMember.segment_code)).all())
    assert "bmw" not in rows
    assert api.get(f"/v1/members/{ids['ann']}").json()["segments"] == ["vip"]
    # The code is free again.
    segment(api, "bmw", [c("attribute.car_make", "eq", "BMW")])
    assert api.get("/v1/segments/bmw/sizes").json()["items"] == []


def test_segments_list_pages_by_code(api):
    for code in ("a1", "b2", "c3"):
        segment(api, code, [c("visits", "gte", 1)])
    first = api.get("/v1/segments?limit=4").json()
    assert [s["code"] for s in first["items"]] == ["a1", "b2", "c3", "new"]
    rest = api.get(f"/v1/segments?limit=4&cursor={first['next_cursor']}").json()
    assert [s["code"] for s in rest["items"]] == ["regular", "vip"]
    assert rest["next_cursor"] is None


@pytest.fixture
def cli(db_url: str) -> Any:
    runner = CliRunner()
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}

    def invoke(*args: str) -> Any:
        result = runner.invoke(cli_app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def test_the_job_runs_from_the_command_line(api, cli):
    ids = population(api)
    cli("jobs", "run", "refresh-segments", "--as-of", T0.isoformat())
    assert names_in(api, "vip", ids) == {"ann"}
    assert names_in(api, "new", ids) == {"cat", "dan"}


def test_openapi_describes_the_segment_routes(api):
    doc = api.get("/openapi.json", role=None).json()
    for path, method in [
        ("/v1/segments", "post"),
        ("/v1/segments", "get"),
        ("/v1/segments/{code}", "get"),
        ("/v1/segments/{code}", "patch"),
        ("/v1/segments/{code}", "delete"),
        ("/v1/segments/{code}/members", "get"),
        ("/v1/segments/{code}/sizes", "get"),
    ]:
        responses = doc["paths"][path][method]["responses"]
        assert {"401", "403"} <= set(responses), (path, method)
        assert "application/problem+json" in responses["403"]["content"]
    condition = doc["components"]["schemas"]["ConditionIn"]
    assert set(condition["required"]) == {"field", "op", "value"}
    assert condition["properties"]["op"]["enum"] == ["gte", "gt", "lte", "lt", "eq", "in"]
    listed = doc["components"]["schemas"]["SegmentMemberList"]
    assert set(listed["properties"]) == {"items", "next_cursor", "total"}


def test_a_segment_a_reward_is_restricted_to_cannot_be_deleted(api):
    segment(api, "bmw", [c("attribute.car_make", "eq", "BMW")])
    r = api.post(
        "/v1/rewards",
        {"name": "BMW wash", "kind": "gift", "cost_points": 100, "valid_days": 30, "segments": ["bmw"]},
        role="marketer",
    )
    assert r.status_code == 201, r.text
    reward_id = r.json()["id"]
    # Deactivated still counts: it could be switched on again.
    assert api.patch(f"/v1/rewards/{reward_id}", {"active": False}, role="marketer").status_code == 200
    before = dump(api.db)
    problem = assert_problem(api.delete("/v1/segments/bmw"), 409, "segment_in_use")
    assert "BMW wash" in problem["detail"]
    assert dump(api.db) == before
    assert api.patch(f"/v1/rewards/{reward_id}", {"segments": []}, role="marketer").status_code == 200
    assert api.delete("/v1/segments/bmw").status_code == 204
