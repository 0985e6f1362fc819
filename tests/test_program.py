"""GET and PATCH /v1/program."""

from __future__ import annotations

from typing import Any

from tests.helpers import assert_problem, state

FRESH = {
    "name": "Loyalty programme",
    "currency": "RUB",
    "timezone": "Europe/Moscow",
    "phone_region": "RU",
    "point_value": "1.00",
    "pending_days": 0,
    "expiry": {"policy": "none", "days": None},
    "rules_version": "1",
}


def patch(api: Any, body: dict[str, Any], role: str = "marketer") -> dict[str, Any]:
    r = api.patch("/v1/program", body, role=role)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert api.get("/v1/program", role="analyst").json() == out
    return out


def test_fresh_programme(api):
    r = api.get("/v1/program", role="cashier")
    assert r.status_code == 200
    assert r.json() == FRESH


def test_patch_each_field(api):
    assert patch(api, {"name": " Car Care Club "}) == {**FRESH, "name": "Car Care Club"}
    assert patch(api, {"timezone": "Asia/Shanghai"})["timezone"] == "Asia/Shanghai"
    assert patch(api, {"phone_region": "cn"})["phone_region"] == "CN"
    assert patch(api, {"pending_days": 14})["pending_days"] == 14
    assert patch(api, {"pending_days": 0})["pending_days"] == 0
    assert patch(api, {"point_value": "0.5"})["point_value"] == "0.50"
    assert patch(api, {"point_value": "2"})["point_value"] == "2.00"
    assert patch(api, {"expiry": {"policy": "after_days", "days": 365}})["expiry"] == {
        "policy": "after_days",
        "days": 365,
    }
    assert patch(api, {"expiry": {"policy": "end_of_year"}})["expiry"] == {"policy": "end_of_year", "days": None}
    # days mean nothing without after_days and are not kept.
    assert patch(api, {"expiry": {"policy": "none", "days": 30}})["expiry"] == {"policy": "none", "days": None}
    assert patch(api, {"rules_version": "2026-01"})["rules_version"] == "2026-01"
    assert patch(api, {}) == {
        "name": "Car Care Club",
        "currency": "RUB",
        "timezone": "Asia/Shanghai",
        "phone_region": "CN",
        "point_value": "2.00",
        "pending_days": 0,
        "expiry": {"policy": "none", "days": None},
        "rules_version": "2026-01",
    }


def test_currency_change_keeps_the_point_value(api):
    assert patch(api, {"currency": "usd"})["point_value"] == "1.00"
    out = patch(api, {"currency": "JPY"})
    assert (out["currency"], out["point_value"]) == ("JPY", "1")
    out = patch(api, {"currency": "BHD"})
    assert (out["currency"], out["point_value"]) == ("BHD", "1.000")
    out = patch(api, {"currency": "CNY", "point_value": "0.05"}, role="admin")
    assert (out["currency"], out["point_value"]) == ("CNY", "0.05")


def test_point_value_must_fit_the_currency(api):
    patch(api, {"point_value": "0.50"})
    before = state(api)
    # Half a yen cannot be paid.
    assert_problem(api.patch("/v1/program", {"currency": "JPY"}), 422, "validation_error", "point_value")
    assert_problem(
        api.patch("/v1/program", {"currency": "JPY", "point_value": "1.5"}), 422, "validation_error", "point_value"
    )
    assert_problem(api.patch("/v1/program", {"point_value": "0.001"}), 422, "validation_error", "point_value")
    assert state(api) == before
    out = patch(api, {"point_value": "0.001", "currency": "BHD"})
    assert (out["currency"], out["point_value"]) == ("BHD", "0.001")


def test_malformed_patch_is_refused(api):
    before = state(api)
    for body, field in [
        ({"currency": "ABC"}, "currency"),
        ({"currency": "RUBL"}, "currency"),
        ({"currency": "R1B"}, "currency"),
        ({"currency": ""}, "currency"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "Moscow"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"phone_region": "XX"}, "phone_region"),
        ({"phone_region": "RUS"}, "phone_region"),
        ({"phone_region": "7"}, "phone_region"),
        ({"point_value": "0"}, "point_value"),
        ({"point_value": "0.00"}, "point_value"),
        ({"point_value": "-1.00"}, "point_value"),
        ({"point_value": "abc"}, "point_value"),
        ({"point_value": "NaN"}, "point_value"),
        ({"point_value": "Infinity"}, "point_value"),
        ({"point_value": True}, "point_value"),
        ({"point_value": "100000000000"}, "point_value"),
        ({"pending_days": -1}, "pending_days"),
        ({"pending_days": "soon"}, "pending_days"),
        ({"expiry": {"policy": "after_days"}}, "expiry.days"),
        ({"expiry": {"policy": "after_days", "days": None}}, "expiry.days"),
        ({"expiry": {"policy": "after_days", "days": 0}}, "expiry.days"),
        ({"expiry": {"policy": "weekly"}}, "expiry.policy"),
        ({"expiry": {}}, "expiry.policy"),
        ({"name": ""}, "name"),
        ({"card_prefix": "9999"}, "card_prefix"),
        ({"name": "Club", "currency": "ABC"}, "currency"),
        ({"name": "Club", "timezone": "Nowhere/Else"}, "timezone"),
    ]:
        assert_problem(api.patch("/v1/program", body), 422, "validation_error", field)
    assert state(api) == before
    assert api.get("/v1/program").json() == FRESH


def test_programme_changes_are_audited(api):
    patch(api, {"currency": "USD", "point_value": "0.10"})
    items = api.get("/v1/audit", params={"action": "program.update"}).json()["items"]
    assert [(e["entity_type"], e["entity_id"], e["details"]) for e in items] == [
        ("program", "1", {"fields": ["currency", "point_value"]})
    ]
    assert items[0]["actor"]["name"] == "test marketer"


def test_the_programme_is_read_once_per_session(api):
    from sqlalchemy import event

    from patron.program import service

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def twice(s: Any) -> tuple[str, str]:
        # No reference is kept between the calls.
        return service.get(s).currency, service.get(s).currency

    event.listen(api.db.engine, "before_cursor_execute", count)
    try:
        assert api.db.read(twice) == ("RUB", "RUB")
    finally:
        event.remove(api.db.engine, "before_cursor_execute", count)
    assert len([s for s in statements if "FROM program" in s]) == 1
