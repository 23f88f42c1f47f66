"""The admin API, ``/api``: events, executions, dead letters, sources, stats and schedules.

A FastAPI application mounted into the runtime's Starlette app behind ``auth.RequireAdmin``,
which has already authenticated every request that reaches a route here. One router per
resource (``routes_*``); what they share is in ``_shared``; the operations themselves are
the use cases in ``solo_os.ops``. Lists are keyset pages, newest first: ``next_cursor`` is an
opaque string to pass back as ``?cursor=``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.admin import (
    models,
    routes_dead_letters,
    routes_events,
    routes_executions,
    routes_overview,
    routes_schedules,
)
from solo_os.admin._shared import Admin, ApiError, decode_cursor, encode_cursor, new_router, principal
from solo_os.ops import errors as ops_errors

log = structlog.get_logger("solo_os.admin")
router = new_router()
ROUTERS = (
    router,
    routes_events.router,
    routes_executions.router,
    routes_dead_letters.router,
    routes_overview.router,
    routes_schedules.router,
)
__all__ = ["Admin", "ApiError", "build", "decode_cursor", "encode_cursor"]


@router.get("/session", response_model=models.SessionOut, tags=["session"])
async def session(request: Request) -> models.SessionOut:
    """How this request is authenticated; for a dashboard session, its CSRF token."""
    who = principal(request)
    if who.session is None:
        return models.SessionOut(method=who.method)
    return models.SessionOut(
        method="session",
        csrf_token=who.session.csrf,
        expires_at=datetime.fromtimestamp(who.session.expires_at, UTC),
    )


# --- the application ----------------------------------------------------------------------


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.error, "message": exc.message}, exc.status)



async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    """An operation refused on one record: 404 when there is none, 409 when its state forbids it."""
    assert isinstance(exc, ops_errors.OpError)
    if isinstance(exc, ops_errors.NotFound):
        return JSONResponse({"error": "not_found", "message": exc.message}, 404)
    return JSONResponse({"error": "conflict", "message": exc.message}, 409)


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own errors (an unparsable body, an unknown path) in this API's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse({"error": code, "message": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, errors.StoreUnavailable):
        return JSONResponse(
            {"error": "unavailable", "message": "the store is unreachable; try again"},
            503,
            headers={"Retry-After": "5"},
        )
    log.error("admin.store_error", error=str(exc))
    return JSONResponse({"error": "store_error", "message": "the store failed; see the logs"}, 500)


def build(application: app_mod.App, store: Callable[[], store_mod.Store]) -> FastAPI:
    """The API as an ASGI app (not yet guarded: ``admin.routes`` wraps it)."""
    api = FastAPI(
        title="solo-os admin API",
        version=_version(),
        description=(
            "Events, executions, dead letters, sources and stats of a solo-os runtime. "
            "Authenticate with `Authorization: Bearer <SOLO_OS_ADMIN_TOKEN>`."
        ),
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not served
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(HTTPBearer(auto_error=False, description="SOLO_OS_ADMIN_TOKEN"))],
    )
    api.state.admin = Admin(application, store)
    for r in ROUTERS:
        api.include_router(r)
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(ops_errors.OpError, _refused)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(errors.StoreError, _store_error)
    return api


def _version() -> str:
    from solo_os import __version__

    return __version__
