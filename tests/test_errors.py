"""The error contract: every failure is application/problem+json with a stable code."""

from __future__ import annotations

import logging
import uuid

from tests.helpers import assert_problem


def test_every_kind_of_error_is_a_problem(api):
    m = api.enrol(email="taken@example.com")
    cases = [
        (api.get("/v1/members", role=None), 401, "unauthorized"),
        (api.patch("/v1/program", {"name": "x"}, role="cashier"), 403, "forbidden"),
        (api.get(f"/v1/members/{uuid.uuid4()}"), 404, "not_found"),
        (api.post("/v1/members", {"first_name": "A", "last_name": "B", "email": "TAKEN@example.com",
                                   "consents": {"program_rules": True}}), 409, "member_exists"),
        (api.post(f"/v1/members/{m['id']}/block", {}), 422, "validation_error"),
        (api.get("/v1/nowhere"), 404, "not_found"),
        (api.delete("/v1/program"), 405, "method_not_allowed"),
    ]  # fmt: skip
    for r, status, code in cases:
        b = assert_problem(r, status, code)
        assert set(b) >= {"type", "title", "status", "detail", "code"}
        assert ("errors" in b) == (status == 422)
        assert r.headers["x-request-id"]


def test_unknown_route_is_404_wrong_method_405(api):
    for role in (None, "admin"):
        for method in ("GET", "POST", "DELETE"):
            b = assert_problem(api.request(method, "/v1/no-such-thing", role=role), 404, "not_found")
            assert b["title"] == "Not Found"
    assert_problem(api.get("/nothing/here", role=None), 404, "not_found")

    r = api.delete("/v1/program")
    b = assert_problem(r, 405, "method_not_allowed")
    assert b["title"] == "Method Not Allowed"
    # Starlette names the methods of the first route that matched the path only.
    assert "GET" in r.headers["allow"].replace(" ", "").split(",")
    assert_problem(api.put("/v1/members", {}), 405, "method_not_allowed")


def test_malformed_json_or_body_is_422(api):
    for content in [b'{"first_name": "A",', b"not json at all", b"{'single': 'quotes'}"]:
        r = api.post("/v1/members", content=content, headers={"Content-Type": "application/json"})
        b = assert_problem(r, 422, "validation_error")
        assert [e["message"] for e in b["errors"]] == ["the body is not valid JSON"]
        assert b["detail"].endswith("the body is not valid JSON")

    b = assert_problem(api.post("/v1/members", [1, 2]), 422, "validation_error")
    assert len(b["errors"]) == 1
    b = assert_problem(api.post("/v1/members"), 422, "validation_error")
    assert b["errors"] == [{"field": "", "message": "this field is required"}]
    b = assert_problem(api.post("/v1/members", {}), 422, "validation_error")
    assert sorted(e["field"] for e in b["errors"]) == ["consents", "first_name", "last_name"]
    assert {e["message"] for e in b["errors"]} == {"this field is required"}
    assert b["detail"] == "; ".join(f"{e['field']}: {e['message']}" for e in b["errors"])


def test_validation_errors_do_not_echo_the_input(api):
    m = api.enrol()
    secret = "4276380012345670"  # a card number that fails Luhn
    for r in [
        api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": secret}),
        api.post(f"/v1/members/{m['id']}/cards", {"kind": "bank", "pan": secret + "0" * 30}),
        api.post("/v1/members", {"first_name": secret * 10, "last_name": "B", "phone": secret,
                                 "consents": {"program_rules": True}}),
        api.get("/v1/identify", params={"bank_pan": secret}),
        api.get("/v1/members", params={"limit": secret}),
    ]:  # fmt: skip
        assert r.status_code == 422
        assert secret not in r.text


def _add_failing_route(app) -> None:  # type: ignore[no-untyped-def]
    def explode() -> None:
        raise RuntimeError("kaboom: secret internals 4276380012345679")

    app.add_api_route("/v1/test-explode", explode, methods=["GET"])


def test_unexpected_exception_is_500_with_request_id(api, app, caplog):
    _add_failing_route(app)
    caplog.set_level(logging.INFO)
    r = api.get("/v1/test-explode")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    rid = r.headers["x-request-id"]
    assert r.json() == {
        "type": "https://patron.dev/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": f"Something went wrong on our side. Quote request id {rid} when you report it.",
        "code": "internal_error",
        "request_id": rid,
    }
    for leak in ("Traceback", "RuntimeError", "kaboom", "4276380012345679", "explode", ".py"):
        assert leak not in r.text

    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1
    rec = errors[0]
    assert rec.name == "patron"
    assert rec.getMessage() == "unexpected error while serving GET /v1/test-explode"
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], RuntimeError)
    assert rec.request_id == rid  # type: ignore[attr-defined]
    access = [rec for rec in caplog.records if rec.name == "patron.access"]
    assert [a.getMessage().rsplit(" ", 1)[0] for a in access] == ["GET /v1/test-explode 500"]
    assert access[0].request_id == rid  # type: ignore[attr-defined]


def test_request_id_is_taken_from_the_client_when_safe_else_made(api, app):
    _add_failing_route(app)
    r = api.get("/v1/program", headers={"X-Request-ID": "till-7.abc_123"})
    assert r.headers["x-request-id"] == "till-7.abc_123"
    r = api.get("/v1/test-explode", headers={"X-Request-ID": "pos-42"})
    assert r.json()["request_id"] == "pos-42"
    for unsafe in ["has spaces in it", "x" * 65, "semi;colon", ""]:
        r = api.get("/v1/program", headers={"X-Request-ID": unsafe})
        assert r.headers["x-request-id"] != unsafe
        assert len(r.headers["x-request-id"]) == 16
    ids = {api.get("/v1/program").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_health_and_openapi(api):
    assert api.get("/health", role=None).json() == {"status": "ok"}
    assert api.get("/ready", role=None).json() == {"status": "ok"}
    doc = api.get("/openapi.json", role=None).json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/program", "get"),
        ("/v1/program", "patch"),
        ("/v1/members", "post"),
        ("/v1/members", "get"),
        ("/v1/members/{member_id}", "get"),
        ("/v1/members/{member_id}", "patch"),
        ("/v1/members/{member_id}/block", "post"),
        ("/v1/members/{member_id}/unblock", "post"),
        ("/v1/members/{member_id}/cards", "post"),
        ("/v1/cards/batch", "post"),
        ("/v1/cards/{number}", "get"),
        ("/v1/cards/{number}/activate", "post"),
        ("/v1/cards/{number}/block", "post"),
        ("/v1/cards/{number}/replace", "post"),
        ("/v1/identify", "get"),
    ]:
        responses = paths[path][method]["responses"]
        assert {"401", "403"} <= set(responses), (path, method)
        assert "application/problem+json" in responses["401"]["content"]
