"""create_app(): the API, its error contract and its middleware."""

from __future__ import annotations

import gc
import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patron import __version__, logs
from patron.access.api import router as access_router
from patron.audit.api import router as audit_router
from patron.cards.api import router as cards_router
from patron.config import Settings, get_settings
from patron.db import Database
from patron.errors import PROBLEM_JSON, InternalError, PatronError
from patron.events.api import router as events_router
from patron.jobs.api import router as jobs_router
from patron.kit import context
from patron.ledger.api import router as ledger_router
from patron.members.api import router as members_router
from patron.program.api import router as program_router
from patron.rewards.api import router as rewards_router
from patron.rules.api import router as rules_router
from patron.segments.api import router as segments_router
from patron.tiers.api import router as tiers_router
from patron.transactions.api import router as transactions_router

log = logging.getLogger("patron")
access_log = logging.getLogger("patron.access")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts)


async def _on_patron_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PatronError)
    return problem_response(exc.problem())


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        # The message only: the rejected input may be a card number or other personal data.
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "this field is required"
        elif err.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        errors.append({"field": _field(tuple(err.get("loc", ()))), "message": message})
    detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or "invalid request"
    body = {
        "type": "https://patron.dev/problems/validation-error",
        "title": "The request is not valid",
        "status": 422,
        "detail": detail,
        "code": "validation_error",
        "errors": errors,
    }
    return problem_response(body)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = {
        "type": f"https://patron.dev/problems/{code.replace('_', '-')}",
        "title": str(exc.detail),
        "status": exc.status_code,
        "detail": str(exc.detail),
        "code": code,
    }
    return problem_response(body, headers=getattr(exc, "headers", None))


class RequestContextMiddleware:
    """Request id, our scrubbed access log, and the last net for unexpected errors.

    An exception that reaches here is logged once, with the request id and a traceback, and the
    client gets a problem+json 500 that names the request id and nothing else.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        token = context.request_id.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception(
                "unexpected error while serving %s %s", scope.get("method"), logs.scrub(scope.get("path", ""))
            )
            if not response_started:
                body = json.dumps(
                    InternalError(
                        f"Something went wrong on our side. Quote request id {rid} when you report it.",
                        request_id=rid,
                    ).problem()
                ).encode()
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", PROBLEM_JSON.encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                access_log.info(
                    "%s %s%s %s %.1fms",
                    scope.get("method"),
                    logs.scrub(scope.get("path", "")),
                    logs.redact_query(query),
                    status,
                    elapsed,
                )
            context.request_id.reset(token)


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    app = FastAPI(
        title="Patron",
        version=__version__,
        summary="Loyalty management: members, cards, points, tiers, rewards and the contact centre.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.db = db or Database(settings)
    app.state.secret = settings.secret_key()

    app.add_exception_handler(PatronError, _on_patron_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(RequestContextMiddleware)

    for router in (
        program_router,
        members_router,
        cards_router,
        transactions_router,
        ledger_router,
        rules_router,
        tiers_router,
        segments_router,
        rewards_router,
        events_router,
        jobs_router,
        audit_router,
        access_router,
    ):
        app.include_router(router, prefix="/v1")

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    def ready() -> dict[str, str]:
        app.state.db.read(lambda s: s.execute(text("SELECT 1")))
        return {"status": "ok"}

    from patron import web  # the web UI: /admin, /pos, /portal, /static (see web/README.md)

    web.mount(app)
    return app


def serve_app() -> FastAPI:
    """The app as `patron serve` runs it in each worker process. Everything made so far (modules,
    routes, templates) lives as long as the process, so it is moved out of the cyclic garbage
    collector's sight: its full collections then scan only what requests leave behind, where
    scanning everything paused a worker for about 60 ms, enough to show in the till's p99."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app
