"""The web UI: the back office (/admin), the POS screen (/pos) and the member portal (/portal).

`mount(app)` (called by create_app) adds the static files, the security middleware, the HTML error
pages of the web paths and every area's router: `patron.web.admin`, and `patron.web.pos` /
`patron.web.portal` when those packages exist (each exposes `router`). See web/README.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from patron.errors import PatronError
from patron.web import errors, security

STATIC_DIR = Path(__file__).resolve().parent / "static"
AREAS = ("admin", "pos", "portal")


def _area_router(name: str) -> APIRouter | None:
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # that area is not built (yet)
        raise
    router: APIRouter | None = getattr(module, "router", None)
    return router


def _is_web(request: Request) -> bool:
    return request.url.path.startswith(security.WEB_PREFIXES) or request.url.path == "/"


def _wrap(app: FastAPI, exc_class: type[Exception]) -> None:
    """Web paths answer errors with pages; the API keeps its problem+json handler."""
    api_handler: Any = app.exception_handlers.get(exc_class)

    async def handler(request: Request, exc: Exception) -> Response:
        if _is_web(request) and not request.url.path.startswith("/static"):
            return await errors.page_for(request, exc)
        if api_handler is None:
            raise exc
        response: Response = await api_handler(request, exc)
        return response

    app.add_exception_handler(exc_class, handler)


def mount(app: FastAPI) -> None:
    app.add_middleware(security.WebMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for exc_class in (PatronError, StarletteHTTPException, RequestValidationError):
        _wrap(app, exc_class)
    app.add_exception_handler(security.SignInRequired, errors.sign_in_required)
    app.include_router(errors.landing_router)
    app.state.web_areas = []
    for area in AREAS:
        router = _area_router(area)
        if router is not None:
            app.include_router(router)
            app.state.web_areas.append(area)
