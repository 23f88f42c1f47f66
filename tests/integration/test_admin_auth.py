"""Who gets into the admin API and dashboard: the token, sessions, CSRF, and nothing without it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from solo_os.admin import auth
from tests import helpers
from tests.apps.billing import Effects, make_app

TOKEN = "admin-token-0123456789abcdef"
ADMIN = {"SOLO_OS_ADMIN_TOKEN": TOKEN}

# Every route of the API, with a request that would succeed given the token.
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/openapi.json", None),
    ("GET", "/api/session", None),
    ("GET", "/api/events", None),
    ("GET", f"/api/events/{uuid.UUID(int=1)}", None),
    ("POST", f"/api/events/{uuid.UUID(int=1)}/revalidate", {}),
    ("POST", "/api/events/revalidate", {"dry_run": True}),
    ("GET", "/api/executions", None),
    ("GET", f"/api/executions/{uuid.UUID(int=1)}", None),
    ("GET", "/api/dead-letters", None),
    ("POST", "/api/dead-letters/replay", {"dry_run": True}),
    ("POST", f"/api/dead-letters/{uuid.UUID(int=1)}/replay", None),
    ("GET", "/api/sources", None),
    ("GET", "/api/stats", None),
    ("GET", "/api/failures", None),
    ("GET", "/api/schedules", None),
    ("GET", "/api/schedules/nightly", None),
    ("POST", "/api/schedules/nightly/trigger", None),
    ("POST", "/api/schedules/nightly/pause", None),
    ("POST", "/api/schedules/nightly/resume", None),
    ("POST", f"/api/events/{uuid.UUID(int=1)}/resend", None),
    ("POST", f"/api/executions/{uuid.UUID(int=1)}/rerun", None),
    ("POST", f"/api/executions/{uuid.UUID(int=1)}/cancel", None),
    ("POST", "/api/executions/cancel", {"dry_run": True}),
    ("POST", "/api/dead-letters/purge", {"dry_run": True}),
    ("POST", f"/api/dead-letters/{uuid.UUID(int=1)}/purge", None),
    ("GET", "/api/no-such-route", None),
]


async def test_without_an_admin_token_neither_api_nor_dashboard_exists(sqlite_url: str) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",)) as h:
        for path in (
            "/api/events",
            "/api/openapi.json",
            "/dashboard",
            "/dashboard/login",
            "/dashboard/static/app.js",
        ):
            r = await h.client.get(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 404, path
        r = await h.client.post("/dashboard/session", json={"token": TOKEN})
        assert r.status_code == 404
        assert (await h.client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_refuses_a_missing_or_wrong_token(
    sqlite_url: str, method: str, path: str, body: Any
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        wrong = [
            {},
            {"authorization": "Bearer wrong-token-0123456789abcdef"},
            {"authorization": f"Bearer {TOKEN}x"},
            {"authorization": f"Bearer {TOKEN[:-1]}"},
            {"authorization": f"Basic {TOKEN}"},
            {"authorization": TOKEN},
            {"authorization": "Bearer "},
            {"cookie": f"{auth.COOKIE}=forged.value"},
        ]
        for headers in wrong:
            r = await h.client.request(method, path, headers=headers, json=body)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in r.text
        r = await h.client.request(method, path, headers={"authorization": f"Bearer {TOKEN}"}, json=body)
        assert r.status_code in (200, 404), r.text  # 404: the record or route does not exist


async def test_openapi_document_lists_every_route_and_the_bearer_scheme(sqlite_url: str) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        doc = (await h.client.get("/api/openapi.json", headers={"authorization": f"Bearer {TOKEN}"})).json()
        assert doc["servers"] == [{"url": "/api"}]
        routes = {(m.upper(), "/api" + p) for p, ops in doc["paths"].items() for m in ops}
        expected = {(m, p.replace(str(uuid.UUID(int=1)), "{x}")) for m, p, _ in ENDPOINTS[2:-1]}
        names = {"{event_id}": "{x}", "{execution_id}": "{x}", "{name}": "nightly"}
        found = set()
        for m, p in routes:
            for param, value in names.items():
                p = p.replace(param, value)
            found.add((m, p))
        assert found == expected | {("GET", "/api/session")}
        assert "HTTPBearer" in doc["components"]["securitySchemes"]
        # no Swagger UI or ReDoc: they would load scripts from a CDN
        for path in ("/api/docs", "/api/redoc"):
            r = await h.client.get(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 404


async def _login(client: httpx.AsyncClient, token: str = TOKEN, **kw: Any) -> httpx.Response:
    return await client.post("/dashboard/session", json={"token": token}, **kw)


async def test_sign_in_gives_a_strict_session_cookie_and_posts_need_its_csrf_token(
    sqlite_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        c = h.client
        page = await c.get("/dashboard")
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        login_page = await c.get("/dashboard/login")
        assert (
            login_page.status_code == 200
            and "script-src 'self'" in login_page.headers["content-security-policy"]
        )

        r = await _login(c)
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{auth.COOKIE}=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http here; see the https test below
        assert TOKEN not in cookie
        csrf = r.json()["csrf_token"]

        index = await c.get("/dashboard")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        assert index.headers["x-frame-options"] == "DENY"
        js = await c.get("/dashboard/static/app.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert "content-security-policy" in js.headers

        session = (await c.get("/api/session")).json()
        assert session["method"] == "session" and session["csrf_token"] == csrf
        assert (await c.get("/api/events")).status_code == 200

        replay = {"dry_run": True}
        assert (await c.post("/api/dead-letters/replay", json=replay)).status_code == 403
        wrong = await c.post("/api/dead-letters/replay", json=replay, headers={"x-csrf-token": "x"})
        assert wrong.status_code == 403 and wrong.json()["error"] == "csrf_failed"
        foreign = await c.post(
            "/api/dead-letters/replay",
            json=replay,
            headers={"x-csrf-token": csrf, "origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        ok = await c.post(
            "/api/dead-letters/replay",
            json=replay,
            headers={"x-csrf-token": csrf, "origin": "http://solo-os.test"},
        )
        assert ok.status_code == 200

        # a bearer token is not ambient: no CSRF token needed, and a cookie beside it is ignored
        bearer = await c.post(
            "/api/dead-letters/replay", json=replay, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert bearer.status_code == 200

        assert (await c.post("/dashboard/logout")).status_code == 403
        out = await c.post("/dashboard/logout", headers={"x-csrf-token": csrf})
        assert out.status_code == 204 and "Max-Age=0" in out.headers["set-cookie"]
        assert (await c.get("/api/events")).status_code == 401


async def test_sign_in_refuses_wrong_tokens_forms_and_foreign_origins_and_throttles(
    sqlite_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        c = h.client
        form = await c.post("/dashboard/session", data={"token": TOKEN})
        assert form.status_code == 415  # a cross-site HTML form cannot send JSON
        foreign = await _login(c, headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert (
            await c.post("/dashboard/session", content=b"{", headers={"content-type": "application/json"})
        ).status_code == 400
        assert (await c.post("/dashboard/session", json=["x"])).status_code == 401
        for _ in range(9):  # the tenth failure, counting the one above
            r = await _login(c, "wrong-token-0123456789")
            assert r.status_code == 401 and "set-cookie" not in r.headers
        throttled = await _login(c)
        assert throttled.status_code == 429 and "retry-after" in throttled.headers


async def test_session_cookie_is_secure_over_https(sqlite_url: str) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        transport = httpx.ASGITransport(app=h.runtime.asgi(lifespan=False))
        async with httpx.AsyncClient(transport=transport, base_url="https://admin.test") as c:
            r = await _login(c)
            assert r.status_code == 200 and "; Secure" in r.headers["set-cookie"]
            assert (await c.get("/api/events")).status_code == 200


def test_session_cookies_are_signed_expire_and_die_with_the_token() -> None:
    guard = auth.Guard(TOKEN, session_seconds=60)
    value, session = guard.new_session(now=1000)
    assert guard.read_session(value, now=1030) == session
    assert guard.read_session(value, now=1060) is None  # expired
    payload, signature = value.split(".")
    assert guard.read_session(f"{payload}.{signature[:-2]}AA", now=1030) is None
    assert guard.read_session(f"{payload}x.{signature}", now=1030) is None
    for junk in ("", ".", "a.b.c", "x" * 5000, "é.é"):
        assert guard.read_session(junk, now=1030) is None
    rotated = auth.Guard(TOKEN + "-rotated")
    assert rotated.read_session(value, now=1030) is None
    assert guard.check_csrf(session, session.csrf)
    assert not guard.check_csrf(session, session.csrf[:-1])
    assert not guard.check_csrf(session, None)
    assert guard.check_token(TOKEN) and not guard.check_token(TOKEN.upper())
    assert not guard.check_token("\ud800")  # a lone surrogate is just a wrong token


def test_login_limiter_forgets_failures_after_the_window() -> None:
    limiter = auth.LoginLimiter(limit=3, window=10, max_clients=2)
    for t in (0, 1, 2):
        limiter.failed("a", now=t)
    assert limiter.blocked("a", now=5)
    assert not limiter.blocked("a", now=12.5)
    limiter.failed("b", now=20)
    limiter.failed("c", now=21)  # over max_clients: the stalest client is forgotten
    assert len(limiter._failures) <= 2


async def test_a_path_with_a_newline_still_needs_the_token_and_gets_a_json_answer(
    sqlite_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        path = "/api/events/%0A/revalidate"
        assert (await h.client.post(path)).status_code == 401
        r = await h.client.post(path, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/json"
