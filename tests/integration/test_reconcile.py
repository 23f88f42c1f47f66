"""The example app's daily reconciliation against a fake Stripe List Events API.

Some of Stripe's events arrive as signed webhooks, the rest never do; the reconciliation job
lists Stripe's recent events (paginated, authenticated) and ingests the missing ones through
the normal path: each event is stored once and its handler runs once, however often the job
runs.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from solo_os import _loader
from solo_os import store as store_mod
from solo_os.runtime import scheduler
from tests import helpers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "app.py"
API_KEY = "sk_test_reconcile_0123456789"
WEBHOOK_SECRET = "whsec_reconcile_0123456789"
NOW = int(time.time())


def stripe_event(i: int, created: int) -> dict[str, Any]:
    return {
        "id": f"evt_{i:05d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "type": "invoice.paid" if i % 2 else "customer.created",
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {"id": f"in_{i:05d}", "amount_paid": 100 + i}},
    }


# 250 recent events (newest first, as Stripe lists them) and 5 older than the job looks back
EVENTS = [stripe_event(i, NOW - 600 * i) for i in range(250)]
OLD = [stripe_event(1000 + i, NOW - 5 * 86400 - i) for i in range(5)]


@pytest.fixture
def fake_stripe() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``GET /v1/events`` with ``limit``, ``starting_after`` and ``created[gte]``; Basic auth."""
    calls: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            calls.append({"path": url.path, "query": query, "auth": self.headers.get("authorization")})
            expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
            if self.headers.get("authorization") != expected:
                return self._reply(401, {"error": {"type": "invalid_request_error"}})
            listed = [e for e in EVENTS + OLD if e["created"] >= int(query.get("created[gte]", 0))]
            if "starting_after" in query:
                ids = [e["id"] for e in listed]
                listed = listed[ids.index(query["starting_after"]) + 1 :]
            limit = int(query.get("limit", 10))
            page = listed[:limit]
            self._reply(200, {"object": "list", "url": "/v1/events", "data": page,
                              "has_more": len(listed) > limit})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def audit_rows(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute("SELECT event_id, type FROM audit")]  # type: ignore[misc]
    finally:
        conn.close()


async def test_daily_reconciliation_ingests_the_missing_events_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    fake_stripe: tuple[str, list[dict[str, Any]]],
) -> None:
    base, calls = fake_stripe
    ledger = tmp_path / "fulfilments.db"
    env = {
        "BILLING_WEBHOOK_SECRET": helpers.SECRET,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": base,
        "FULFILMENTS_DB": str(ledger),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = _loader.load_app(str(EXAMPLE))
    assert "stripe" in app.sources and "daily-reconciliation" in app.schedules
    assert app.schedules["daily-reconciliation"].expression == "0 2 * * *"
    began = time.time()
    async with helpers.running(app, database_url, env=env) as h:
        stripe = app.sources["stripe"]
        for event in EVENTS[::6]:  # 42 of them arrived as webhooks
            body = json.dumps(event).encode()
            headers = {"content-type": "application/json", **stripe.sign(body, time.time())}
            r = await h.client.post("/webhooks/stripe", content=body, headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "accepted", r.text

        async def run_job() -> None:
            xid = await scheduler.trigger(app, h.store, "daily-reconciliation", datetime.now(UTC))

            async def done() -> bool:
                x = await h.store.get_execution(xid)
                assert x is None or x.status != "dead", x
                return x is not None and x.status == "succeeded"

            await helpers.eventually(done, timeout=60)

        await run_job()

        async def all_audited() -> bool:
            return len(audit_rows(ledger)) >= len(EVENTS)

        await helpers.eventually(all_audited, timeout=60)
        await run_job()  # again: nothing new
        await helpers.eventually(lambda: _idle(h.store), timeout=30)
        events = await h.store.list_events(store_mod.Filters(source="stripe", limit=0))
    keys = sorted(e.idempotency_key for e in events)
    assert keys == sorted(e["id"] for e in EVENTS)  # each once; the old ones not listed
    assert {e.status for e in events} == {"accepted"}
    audits = audit_rows(ledger)
    stripe_ids = {str(e.id) for e in events}
    stripe_audits = [a for a in audits if a[0] in stripe_ids]
    assert len(stripe_audits) == len(EVENTS) and len({a[0] for a in stripe_audits}) == len(EVENTS)
    # both runs listed every page with the key, from three days back
    pages = [c for c in calls if c["path"] == "/v1/events"]
    assert len(pages) == 6 and all(c["auth"] and c["auth"].startswith("Basic ") for c in pages)
    since = int(pages[0]["query"]["created[gte]"])
    assert began - 3 * 86400 - 1 <= since <= time.time() - 3 * 86400
    assert pages[1]["query"]["starting_after"] == "evt_00099"


async def _idle(store: store_mod.Store) -> bool:
    counts = await store.counts()
    return counts["pending"] == counts["running"] == 0


async def test_reconciliation_without_an_api_key_goes_dead_with_a_clear_error(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "BILLING_WEBHOOK_SECRET": helpers.SECRET,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "FULFILMENTS_DB": str(tmp_path / "f.db"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    app = _loader.load_app(str(EXAMPLE))
    async with helpers.running(app, database_url, env=env) as h:
        xid = await scheduler.trigger(app, h.store, "daily-reconciliation", datetime.now(UTC))

        async def dead() -> bool:
            x = await h.store.get_execution(xid)
            return x is not None and x.status == "dead"

        await helpers.eventually(dead, timeout=30)
        x = await h.store.get_execution(xid)
    assert x is not None and x.attempts == 1 and "STRIPE_API_KEY is not set" in (x.last_error or "")


def test_the_example_runs_without_stripe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    app = _loader.load_app(str(EXAMPLE))
    assert "stripe" not in app.sources and "daily-reconciliation" in app.schedules
    app.prepare({"BILLING_WEBHOOK_SECRET": helpers.SECRET})  # no Stripe secret needed
