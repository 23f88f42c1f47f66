"""The dashboard, ``/dashboard``: static pages shipped in the package, sign-in and sign-out.

The pages are plain HTML, CSS and JavaScript (no build step, nothing loaded from elsewhere);
the script reads and changes everything through the admin API with the session cookie. A
strict Content-Security-Policy allows only this origin's own scripts, styles and requests.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from solo_os.admin import auth

log = structlog.get_logger("solo_os.admin")
STATIC = resources.files("solo_os.admin") / "static"
MAX_LOGIN_BYTES = 4096

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def _json(status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(body) if body is not None else b""
    return Response(
        content,
        status,
        headers={"cache-control": "no-store", **(headers or {})},
        media_type="application/json" if body is not None else None,
    )


class SecureHeaders:
    """ASGI wrapper that adds ``SECURITY_HEADERS`` to every response (static files too)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class Dashboard:
    def __init__(self, guard: auth.Guard, limiter: auth.LoginLimiter | None = None) -> None:
        self.guard = guard
        self.limiter = limiter or auth.LoginLimiter()

    def _page(self, name: str) -> Response:
        path = STATIC / name
        return FileResponse(
            str(path),
            media_type="text/html",
            headers={"cache-control": "no-store", **SECURITY_HEADERS},
        )

    async def index(self, request: Request) -> Response:
        if self.guard.authenticate(auth.Headers(request.scope)) is None:
            return RedirectResponse("/dashboard/login", 303, headers=SECURITY_HEADERS)
        return self._page("index.html")

    async def login_page(self, _request: Request) -> Response:
        return self._page("login.html")

    async def login(self, request: Request) -> Response:
        """``{"token": ...}`` as JSON (so a cross-site form cannot post it) → a session cookie."""
        client = request.client.host if request.client else "?"
        headers = auth.Headers(request.scope)
        scheme = "https" if auth.is_https(request.scope) else "http"
        if not auth.same_origin(headers, scheme):
            return _json(403, {"error": "csrf_failed", "message": "foreign Origin"})
        if (request.headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            return _json(415, {"error": "unsupported_media_type", "message": "send JSON"})
        if await self.limiter.check(client):
            log.warning("admin.login_throttled", client=client)
            return _json(
                429,
                {"error": "too_many_attempts", "message": "try again later"},
                {"retry-after": str(int(self.limiter.window))},
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return _json(413, {"error": "payload_too_large"})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _json(400, {"error": "invalid_request", "message": "the body is not JSON"})
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not self.guard.check_token(token):
            await self.limiter.record_failure(client)
            log.warning("admin.login_failed", client=client)
            return _json(401, {"error": "unauthorized", "message": "wrong admin token"})
        await self.limiter.record_success(client)
        value, session = self.guard.new_session()
        log.info("admin.login", client=client)
        return _json(
            200,
            {"csrf_token": session.csrf, "expires_at": session.expires_at},
            {"set-cookie": self.guard.cookie_header(value, secure=scheme == "https")},
        )

    async def logout(self, request: Request) -> Response:
        headers = auth.Headers(request.scope)
        session = self.guard.read_session(auth.session_cookie(headers))
        scheme = "https" if auth.is_https(request.scope) else "http"
        if session is None:
            return _json(401, {"error": "unauthorized"})
        if not (
            self.guard.check_csrf(session, headers.get(auth.CSRF_HEADER))
            and auth.same_origin(headers, scheme)
        ):
            return _json(403, {"error": "csrf_failed"})
        return Response(
            status_code=204,
            headers={"set-cookie": self.guard.cookie_header("", secure=scheme == "https", max_age=0)},
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.index, methods=["GET"]),
            Route("/dashboard/", self.index, methods=["GET"]),
            Route("/dashboard/login", self.login_page, methods=["GET"]),
            Route("/dashboard/session", self.login, methods=["POST"]),
            Route("/dashboard/logout", self.logout, methods=["POST"]),
            Mount(
                "/dashboard/static",
                app=SecureHeaders(StaticFiles(directory=str(STATIC))),
                name="dashboard-static",
            ),
        ]
