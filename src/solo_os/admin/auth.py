"""Who may use the admin API and dashboard: the admin token, sessions and CSRF.

Scripts send ``Authorization: Bearer <SOLO_OS_ADMIN_TOKEN>``. A person signs in to the
dashboard with that token once and gets a session cookie: signed by ``itsdangerous``
(HMAC-SHA256 under a key derived from the token, so changing the token ends every session), ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over https, and expiring. Each session carries its own CSRF
token; a state-changing request authenticated by the cookie must repeat it in the
``X-CSRF-Token`` header and, when the browser names an ``Origin``, come from this host.
Every comparison of a secret runs in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any, Literal
from urllib.parse import urlsplit

import itsdangerous
import orjson
import structlog

from solo_os import errors
from solo_os import store as store_mod

log = structlog.get_logger("solo_os.admin")

COOKIE = "solo_os_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_VERSION = 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Session:
    csrf: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class Principal:
    """How a request proved it holds the admin token."""

    method: Literal["bearer", "session"]
    session: Session | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Guard:
    """Checks the admin token and issues and reads session cookies."""

    def __init__(self, token: str, *, session_seconds: int = SESSION_SECONDS) -> None:
        if not token:
            raise ValueError("the admin guard needs a token")
        # Compare digests, not the strings: equal lengths, so not even the length leaks.
        self._token_digest = hashlib.sha256(token.encode("utf-8")).digest()
        # itsdangerous signs and verifies (constant-time); the key is derived from the token.
        self._signer = itsdangerous.Signer(
            token, salt="solo-os admin session v1", key_derivation="hmac", digest_method=hashlib.sha256
        )
        self.session_seconds = session_seconds

    # --- the token -------------------------------------------------------------------------

    def check_token(self, given: str) -> bool:
        digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    def check_bearer(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return self.check_token(value.strip())

    # --- sessions --------------------------------------------------------------------------

    def new_session(self, now: float | None = None) -> tuple[str, Session]:
        """A fresh session and its cookie value."""
        issued = int(time.time() if now is None else now)
        session = Session(secrets.token_urlsafe(32), issued, issued + self.session_seconds)
        body = orjson.dumps(
            {
                "v": _SESSION_VERSION,
                "csrf": session.csrf,
                "iat": session.issued_at,
                "exp": session.expires_at,
            }
        )
        return self._signer.sign(_b64(body)).decode("ascii"), session

    def read_session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in ``cookie`` if its signature is ours and it has not expired."""
        if not cookie or len(cookie) > 4096 or not cookie.isascii():
            return None
        try:
            payload = self._signer.unsign(cookie)
        except itsdangerous.BadSignature:
            return None
        try:
            data = orjson.loads(_unb64(payload.decode("ascii")))
            session = Session(str(data["csrf"]), int(data["iat"]), int(data["exp"]))
            version = data["v"]
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if version != _SESSION_VERSION:
            return None
        if (time.time() if now is None else now) >= session.expires_at:
            return None
        return session

    @staticmethod
    def check_csrf(session: Session, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(session.csrf.encode(), given.encode("utf-8", "replace"))

    # --- requests --------------------------------------------------------------------------

    def authenticate(self, headers: Headers) -> Principal | None:
        """The principal of a request: a bearer token first, else the session cookie."""
        authorization = headers.get("authorization")
        if authorization is not None:
            # A request that names a token is judged by it alone, never by a cookie beside it.
            return Principal("bearer") if self.check_bearer(authorization) else None
        session = self.read_session(session_cookie(headers))
        return Principal("session", session) if session is not None else None

    def cookie_header(self, value: str, *, secure: bool, max_age: int | None = None) -> str:
        age = self.session_seconds if max_age is None else max_age
        parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={age}", "HttpOnly", "SameSite=Strict"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)


class Headers:
    """Case-insensitive request headers from an ASGI scope (first value wins)."""

    def __init__(self, scope: Scope) -> None:
        self._items: dict[str, str] = {}
        self._cookies: list[str] = []
        for raw_key, raw_value in scope.get("headers", ()):
            key = raw_key.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if key == "cookie":
                self._cookies.append(value)
            self._items.setdefault(key, value)

    def get(self, key: str) -> str | None:
        return self._items.get(key.lower())

    @property
    def cookies(self) -> list[str]:
        return self._cookies


def session_cookie(headers: Headers) -> str | None:
    for raw in headers.cookies:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # noqa: S112 - a malformed Cookie header means no session
            continue
        if COOKIE in jar:
            return jar[COOKIE].value
    return None


def same_origin(headers: Headers, scheme: str) -> bool:
    """False only when the browser names an ``Origin`` that is not this host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host")
    if not host or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() == host.lower() and parts.scheme in (scheme, "http", "https")


def is_https(scope: Scope) -> bool:
    return str(scope.get("scheme", "http")) in ("https", "wss")


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class RequireAdmin:
    """ASGI middleware: every request below it needs the admin token or a session.

    It runs before routing, so an anonymous caller learns nothing, not even which paths
    exist. A cookie-authenticated state-changing request also needs the session's CSRF token
    and, where the browser names one, this host's origin.
    """

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope)
        principal = self.guard.authenticate(headers)
        if principal is None:
            log.warning("admin.unauthorized", path=scope.get("path", ""))
            await send_json(
                send,
                401,
                {"error": "unauthorized", "message": "a valid admin token is required"},
                [(b"www-authenticate", b'Bearer realm="solo-os"')],
            )
            return
        if principal.session is not None and scope.get("method", "GET") not in SAFE_METHODS:
            scheme = "https" if is_https(scope) else "http"
            if not (
                self.guard.check_csrf(principal.session, headers.get(CSRF_HEADER))
                and same_origin(headers, scheme)
            ):
                log.warning("admin.csrf_rejected", path=scope.get("path", ""))
                await send_json(
                    send,
                    403,
                    {
                        "error": "csrf_failed",
                        "message": "missing or wrong X-CSRF-Token, or a foreign Origin",
                    },
                )
                return
        scope.setdefault("state", {})["admin"] = principal
        await self.app(scope, receive, send)


class LoginLimiter:
    """At most ``limit`` failed sign-ins per client address in a sliding ``window``."""

    def __init__(self, limit: int = 10, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        seen = self._failures.get(client)
        if seen is None:
            return False
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self._failures[client]
            return False
        return len(seen) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if client not in self._failures and len(self._failures) >= self.max_clients:
            # Forget the client whose last failure is oldest: bounded memory under a spray.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]
        self._failures.setdefault(client, deque(maxlen=self.limit)).append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    # The dashboard's interface (the shared limiter below counts in the store).
    async def check(self, client: str) -> bool:
        """Whether ``client`` is blocked now."""
        return self.blocked(client)

    async def record_failure(self, client: str) -> None:
        self.failed(client)

    async def record_success(self, client: str) -> None:
        self.succeeded(client)


class SharedLoginLimiter(LoginLimiter):
    """At most ``limit`` failed sign-ins per client address per ``window``, counted in the
    store (table ``signin_throttle``), so every process of ``serve --workers N`` and every
    replica share one count. Addresses are stored as SHA-256 digests. Should the store be
    unreachable, each process falls back to counting on its own.
    """

    def __init__(
        self,
        store: Callable[[], store_mod.Store],
        limit: int = 10,
        window: float = 300.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(limit, window)
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _key(client: str) -> str:
        return hashlib.sha256(client.encode()).hexdigest()

    async def check(self, client: str) -> bool:
        try:
            failures = await self._store().signin_failures(self._key(client), self._clock(), self.window)
        except errors.StoreError as exc:
            log.warning("admin.throttle_unshared", error=str(exc))
            return self.blocked(client)
        return failures >= self.limit

    async def record_failure(self, client: str) -> None:
        self.failed(client)  # the fallback keeps counting too
        try:
            await self._store().signin_failed(self._key(client), self._clock(), self.window)
        except errors.StoreError as exc:
            log.warning("admin.throttle_unshared", error=str(exc))

    async def record_success(self, client: str) -> None:
        self.succeeded(client)
        try:
            await self._store().signin_succeeded(self._key(client))
        except errors.StoreError as exc:
            log.warning("admin.throttle_unshared", error=str(exc))
