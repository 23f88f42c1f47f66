"""Smaller holes of issue 14, on SQLite and PostgreSQL: credential-looking headers are not
stored, ``POST /webhooks/billing/`` is served without a redirect, and the admin sign-in
throttle is shared through the store by every process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any
from uuid import UUID

import httpx

from solo_os import App, Context, sources
from solo_os import store as store_mod
from tests import helpers

TOKEN = "admin-token-0123456789abcdef"


def header_app(seen: list[dict[str, str]], **kw: Any) -> App:
    app = App(service="headers-test", **kw)
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job")
    async def job(event: Any, ctx: Context) -> None:
        assert ctx.event is not None
        seen.append(ctx.event.headers)

    return app


CREDENTIALS = {
    "authorization": "Bearer abc",
    "proxy-authorization": "Basic abc",
    "cookie": "session=abc",
    "x-auth-token": "abc",
    "x-api-key": "abc",
    "x-apikey": "abc",
    "api-key": "abc",
    "x-tenant-key": "abc",
    "x-client-secret": "abc",
    "x-password": "abc",
    "x-custom-signature": "abc",
    "x-session-id": "abc",
    "x-amz-security-token": "abc",
}
HARMLESS = {"x-request-id": "r-1", "user-agent": "provider/1.0", "x-event-type": "job"}


async def _post_with(h: helpers.Harness, path: str, extra: dict[str, str], key: str) -> httpx.Response:
    body, headers = helpers.delivery({"n": 1}, event_type="job", key=key)
    return await h.client.post(path, content=body, headers={**headers, **extra})


async def _stored_headers(h: helpers.Harness, event_id: str) -> dict[str, str]:
    found = await h.store.get_event(UUID(event_id))
    assert found is not None
    headers: dict[str, str] = found[0].headers or {}
    return headers


async def test_credential_looking_headers_are_dropped_before_storage(database_url: str) -> None:
    seen: list[dict[str, str]] = []
    async with helpers.running(header_app(seen), database_url) as h:
        r = await _post_with(h, "/webhooks/billing", {**CREDENTIALS, **HARMLESS}, "k1")
        assert r.status_code == 200, r.text
        stored = await _stored_headers(h, r.json()["event_id"])
        await helpers.eventually(lambda: _true(len(seen) == 1))
    for name in (*CREDENTIALS, "x-signature"):
        assert name not in stored, name
        assert name not in seen[0], name
    for name, value in HARMLESS.items():
        assert stored[name] == value
    assert stored["x-idempotency-key"] == "k1"  # a key the source reads is kept


async def test_the_app_keeps_more_headers_but_never_credentials_proper(database_url: str) -> None:
    app = header_app([], store_headers=["X-Tenant-Key", "authorization", "x-signature"])
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        r = await _post_with(h, "/webhooks/billing", CREDENTIALS, "k2")
        assert r.status_code == 200, r.text
        stored = await _stored_headers(h, r.json()["event_id"])
    assert stored["x-tenant-key"] == "abc"
    for name in ("authorization", "cookie", "x-signature", "x-auth-token", "x-api-key"):
        assert name not in stored, name


async def test_a_trailing_slash_is_served_without_a_redirect(database_url: str) -> None:
    async with helpers.running(header_app([]), database_url, roles=("serve",)) as h:
        slash = await _post_with(h, "/webhooks/billing/", {}, "same")
        assert slash.status_code == 200, (slash.status_code, slash.headers)
        again = await _post_with(h, "/webhooks/billing", {}, "same")
        assert again.status_code == 200 and again.json()["event_id"] == slash.json()["event_id"]
        unknown = await _post_with(h, "/webhooks/nope/", {}, "x")
        assert unknown.status_code == 404 and "location" not in unknown.headers
        assert (await _post_with(h, "/webhooks//", {}, "y")).status_code in (404, 405)


async def test_the_sign_in_throttle_is_shared_by_every_process(database_url: str) -> None:
    """Two runtimes on one database (two processes of ``serve --workers 2``), failing sign-ins
    concurrently: ten failures in all block the client in both."""
    settings = {"SOLO_OS_ADMIN_TOKEN": TOKEN}
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(
            helpers.running(header_app([]), database_url, roles=("serve",), settings=settings)
        )
        two = await stack.enter_async_context(
            helpers.running(header_app([]), database_url, roles=("serve",), settings=settings)
        )

        async def fail(h: helpers.Harness) -> int:
            r = await h.client.post("/dashboard/session", json={"token": "wrong-token-0123456789"})
            return r.status_code

        codes = await asyncio.gather(*(fail(one if i % 2 else two) for i in range(10)))
        assert sorted(codes) == [401] * 10
        for h in (one, two):
            r = await h.client.post("/dashboard/session", json={"token": TOKEN})
            assert r.status_code == 429 and "retry-after" in r.headers
        failures = await one.store.signin_failures(_digest("127.0.0.1"), store_mod.utcnow(), 300.0)
        assert failures == 10


def _digest(client: str) -> str:
    return hashlib.sha256(client.encode()).hexdigest()


async def _true(value: bool) -> bool:
    return value
