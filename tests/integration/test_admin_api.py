"""The admin API (``/api``) against real stores: every endpoint, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from solo_os import App, Context, Retry, errors, sources
from solo_os import store as store_mod
from solo_os.admin import revalidate as revalidate_mod
from solo_os.core import records
from solo_os.store import _schema
from tests import helpers
from tests.apps.billing import Effects, InvoicePaid, LenientInvoice, make_app

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN = {"SOLO_OS_ADMIN_TOKEN": TOKEN}


class Switch:
    broken = True


def flaky_app(switch: Switch, *, max_attempts: int = 1) -> App:
    """``charge`` fails while the switch is broken, after a durable step; ``audit`` never fails."""
    app = App(service="admin-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", schema=InvoicePaid, retry=Retry(max_attempts=max_attempts))
    async def charge(event: InvoicePaid, ctx: Context) -> None:
        await ctx.step("reserve", lambda: {"reserved": str(event.id)})
        if switch.broken:
            raise ConnectionError("provider down")

    @app.on("billing", "refund.created", name="refund")
    def refund(event: dict[str, Any], ctx: Context) -> None:
        return None

    return app


async def _get(h: helpers.Harness, path: str, **params: Any) -> Any:
    r = await h.client.get(path, headers=AUTH, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def _post(h: helpers.Harness, path: str, body: Any = None) -> httpx.Response:
    return await h.client.post(path, headers=AUTH, json=body)


async def _settled(h: helpers.Harness, n: int) -> bool:
    rows = await h.store.list_executions(store_mod.Filters(limit=0))
    return len(rows) >= n and all(r.status in ("succeeded", "dead") for r in rows)


async def _dead(h: helpers.Harness, n: int) -> bool:
    return len(await h.store.matching_ids(store_mod.Filters(status="dead", limit=0))) == n


# --- events -------------------------------------------------------------------------------


async def test_events_are_listed_newest_first_with_filters_and_cursor_pages(
    database_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",), settings=ADMIN) as h:
        posted = []
        for i in range(5):
            r = await h.post("billing", helpers.invoice(), key=f"ok-{i}")
            posted.append(r.json()["event_id"])
        for i in range(2):
            await h.post("billing", helpers.invoice(amount_cents=0), key=f"bad-{i}")
        await h.post("billing", {"x": 1}, key="refund-1", event_type="refund.created")

        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = await _get(h, "/api/events", **params)
            seen.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len(seen) == 8 and len({e["id"] for e in seen}) == 8
        times = [e["received_at"] for e in seen]
        assert times == sorted(times, reverse=True)
        assert [e["idempotency_key"] for e in seen][-5:] == [f"ok-{i}" for i in reversed(range(5))]

        rejected = await _get(h, "/api/events", status="rejected")
        assert {e["idempotency_key"] for e in rejected["items"]} == {"bad-0", "bad-1"}
        typed = await _get(h, "/api/events", type="refund.created")
        assert [e["idempotency_key"] for e in typed["items"]] == ["refund-1"]
        assert (await _get(h, "/api/events", source="nope"))["items"] == []
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await _get(h, "/api/events", since=future))["items"] == []
        assert len((await _get(h, "/api/events", until=future, limit=500))["items"]) == 8
        naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
        assert len((await _get(h, "/api/events", since=naive))["items"]) == 8  # naive is UTC

        bad = await h.client.get("/api/events", headers=AUTH, params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_cursor"
        for params in ({"limit": 0}, {"limit": 501}, {"status": "dead"}, {"since": "yesterday"}):
            r = await h.client.get("/api/events", headers=AUTH, params=params)
            assert r.status_code == 422, params


async def test_event_detail_shows_headers_without_signatures_body_errors_and_executions(
    database_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",), settings=ADMIN) as h:
        inv = helpers.invoice()
        body, headers = helpers.delivery(inv, key="evt-1")
        headers["authorization"] = "Bearer upstream-credential"
        r = await h.client.post("/webhooks/billing", content=body, headers=headers)
        event_id = r.json()["event_id"]
        detail = await _get(h, f"/api/events/{event_id}")
        assert detail["status"] == "accepted" and detail["idempotency_key"] == "evt-1"
        assert detail["headers"]["x-event-type"] == "invoice.paid"
        assert not {"x-signature", "authorization"} & set(detail["headers"])
        assert helpers.SECRET not in r.text + str(detail)
        assert detail["body"] == body.decode() and detail["body_encoding"] == "utf-8"
        assert detail["payload"] == inv
        assert detail["errors"] is None
        assert sorted(x["handler"] for x in detail["executions"]) == ["audit", "fulfil"]
        assert {x["event_id"] for x in detail["executions"]} == {event_id}

        await h.post("billing", helpers.invoice(currency="EURO"), key="evt-2")
        [listed] = (await _get(h, "/api/events", status="rejected"))["items"]
        rejected = await _get(h, f"/api/events/{listed['id']}")
        assert rejected["status"] == "rejected" and rejected["executions"] == []
        assert rejected["payload"]["currency"] == "EURO"  # parsed from the raw body
        assert [e["loc"] for e in rejected["errors"]] == [["currency"]]

        binary = b"\xff\xfe not utf-8"
        raw_body, raw_headers = helpers.delivery(binary, key="evt-3")
        await h.client.post("/webhooks/billing", content=raw_body, headers=raw_headers)
        [listed] = (await _get(h, "/api/events", status="rejected", limit=1))["items"]
        raw = await _get(h, f"/api/events/{listed['id']}")
        assert raw["body_encoding"] == "base64" and raw["payload"] is None

        missing = await h.client.get(f"/api/events/{uuid.uuid4()}", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert (await h.client.get("/api/events/not-a-uuid", headers=AUTH)).status_code == 422


async def test_revalidation_accepts_rejected_events_that_the_fixed_schema_now_passes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revalidate_mod, "BATCH", 1)  # bulk work goes batch by batch
    effects = Effects()
    async with helpers.running(make_app(effects), database_url, roles=("serve",), settings=ADMIN) as h:
        first = (await h.post("billing", helpers.invoice(amount_cents=0), key="r-1")).json()
        second = (await h.post("billing", helpers.invoice(currency="EURO"), key="r-2")).json()
        hopeless = (await h.post("billing", {"amount_cents": 1}, key="r-3")).json()
        await h.post("billing", helpers.invoice(), key="r-4")
        assert first["error"] == second["error"] == hopeless["error"] == "invalid_payload"
        ids = {e.idempotency_key: e.id for e in await h.store.list_events(store_mod.Filters(limit=0))}

    # the schema is fixed and the app restarted
    async with helpers.running(make_app(effects, schema=LenientInvoice), database_url, settings=ADMIN) as h:
        one = ids["r-1"]
        dry = await _post(h, f"/api/events/{one}/revalidate", {"dry_run": True})
        assert dry.status_code == 200
        assert dry.json() == {
            "event_id": str(one),
            "outcome": "accepted",
            "executions": 2,
            "errors": None,
            "reason": None,
        }
        stored = await h.store.get_event(one)
        assert stored is not None and stored[0].status == "rejected"  # a dry run changes nothing

        done = await _post(h, f"/api/events/{one}/revalidate")
        assert done.status_code == 200 and done.json()["outcome"] == "accepted"
        detail = await _get(h, f"/api/events/{one}")
        assert detail["status"] == "accepted" and detail["errors"] is None
        assert detail["correlation_id"] == "r-1"  # kept from the original delivery
        assert len(detail["executions"]) == 2
        await helpers.eventually(lambda: _settled(h, 2))

        again = await _post(h, f"/api/events/{one}/revalidate")
        assert again.status_code == 409
        assert (await _post(h, f"/api/events/{ids['r-4']}/revalidate")).status_code == 409
        assert (await _post(h, f"/api/events/{uuid.uuid4()}/revalidate")).status_code == 404

        bulk_dry = (await _post(h, "/api/events/revalidate", {"dry_run": True})).json()
        assert (bulk_dry["matched"], bulk_dry["accepted"], bulk_dry["rejected"]) == (2, 1, 1)
        bulk = (await _post(h, "/api/events/revalidate", {"source": "billing"})).json()
        assert (bulk["matched"], bulk["accepted"], bulk["rejected"]) == (2, 1, 1)
        by_id = {r["event_id"]: r for r in bulk["results"]}
        assert by_id[str(ids["r-3"])]["outcome"] == "rejected"
        assert by_id[str(ids["r-3"])]["errors"]
        remaining = await _get(h, "/api/events", status="rejected")
        assert [e["idempotency_key"] for e in remaining["items"]] == ["r-3"]
        await helpers.eventually(lambda: _settled(h, 4))
        bad = await _post(h, "/api/events/revalidate", {"limit": 0})
        assert bad.status_code == 422
        extra = await _post(h, "/api/events/revalidate", {"surprise": 1})
        assert extra.status_code == 422


# --- executions and dead letters ----------------------------------------------------------


async def test_execution_detail_has_attempts_with_tracebacks_and_steps(database_url: str) -> None:
    switch = Switch()
    async with helpers.running(flaky_app(switch, max_attempts=2), database_url, settings=ADMIN) as h:
        inv = helpers.invoice()
        r = await h.post("billing", inv, key="x-1")
        event_id = r.json()["event_id"]
        await helpers.eventually(lambda: _dead(h, 1))
        page = await _get(h, "/api/executions", status="dead")
        [x] = page["items"]
        detail = await _get(h, f"/api/executions/{x['id']}")
        assert detail["status"] == "dead" and detail["attempts"] == 2
        assert detail["event"]["id"] == event_id
        assert [a["outcome"] for a in detail["attempt_history"]] == ["failed", "failed"]
        for a in detail["attempt_history"]:
            assert a["error_type"] == "ConnectionError" and a["error_message"] == "provider down"
            assert "ConnectionError: provider down" in a["traceback"]
            assert a["duration_ms"] >= 0
        assert [(s["name"], s["attempt"]) for s in detail["steps"]] == [("reserve", 1)]
        assert detail["steps"][0]["result"] == {"reserved": inv["id"]}

        assert (await _get(h, "/api/executions", handler="charge"))["items"][0]["id"] == x["id"]
        assert (await _get(h, "/api/executions", event_id=event_id))["items"][0]["id"] == x["id"]
        assert (await _get(h, "/api/executions", error="provider"))["items"][0]["id"] == x["id"]
        assert (await _get(h, "/api/executions", status="succeeded"))["items"] == []
        missing = await h.client.get(f"/api/executions/{uuid.uuid4()}", headers=AUTH)
        assert missing.status_code == 404


async def test_executions_page_by_cursor_without_gaps_or_repeats(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",), settings=ADMIN) as h:
        for i in range(7):
            await h.post("billing", helpers.invoice(), key=f"p-{i}")  # 2 executions each
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 4, "status": "pending"}
            if cursor:
                params["cursor"] = cursor
            page = await _get(h, "/api/executions", **params)
            seen.extend(x["id"] for x in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 14 and len(set(seen)) == 14
        everything = await h.store.list_executions(store_mod.Filters(limit=0))
        assert seen == [str(x.id) for x in everything]  # the same order: newest first


async def test_dead_letters_list_replay_one_replay_by_filter_and_dry_run(database_url: str) -> None:
    switch = Switch()
    app = flaky_app(switch, max_attempts=1)
    async with helpers.running(app, database_url, settings=ADMIN) as h:
        for i in range(4):
            await h.post("billing", helpers.invoice(), key=f"d-{i}")
        await helpers.eventually(lambda: _dead(h, 4))
        listed = await _get(h, "/api/dead-letters", limit=3)
        assert len(listed["items"]) == 3 and listed["next_cursor"]
        rest = await _get(h, "/api/dead-letters", limit=3, cursor=listed["next_cursor"])
        ids = [x["id"] for x in listed["items"] + rest["items"]]
        assert len(set(ids)) == 4
        assert all(x["status"] == "dead" for x in listed["items"] + rest["items"])
        assert (await _get(h, "/api/dead-letters", handler="refund"))["items"] == []

        dry = (await _post(h, "/api/dead-letters/replay", {"dry_run": True})).json()
        assert dry["dry_run"] and dry["matched"] == 4 and dry["replayed"] == 0
        assert sorted(dry["ids"]) == sorted(ids)
        assert await _dead(h, 4)  # nothing changed

        switch.broken = False
        one = await _post(h, f"/api/dead-letters/{ids[0]}/replay")
        assert one.status_code == 200 and one.json()["replayed"] == 1
        await helpers.eventually(lambda: _status(h, ids[0], "succeeded"))
        replayed = await h.store.get_execution(uuid.UUID(ids[0]))
        assert replayed.attempts == 2 and replayed.max_attempts == 2  # a fresh budget of 1
        again = await _post(h, f"/api/dead-letters/{ids[0]}/replay")
        assert again.status_code == 409 and again.json()["error"] == "conflict"
        assert (await _post(h, f"/api/dead-letters/{uuid.uuid4()}/replay")).status_code == 404

        chosen = await _post(h, "/api/dead-letters/replay", {"ids": [ids[1], ids[0]]})
        assert chosen.json()["replayed"] == 1 and chosen.json()["ids"] == [ids[1]]
        none = await _post(h, "/api/dead-letters/replay", {"handler": "refund"})
        assert none.json() == {"dry_run": False, "matched": 0, "replayed": 0, "ids": [], "truncated": False}
        rest_of_them = await _post(h, "/api/dead-letters/replay", {"handler": "charge", "error": "down"})
        assert rest_of_them.json()["replayed"] == 2
        await helpers.eventually(lambda: _settled(h, 4))
        assert not await h.store.matching_ids(store_mod.Filters(status="dead", limit=0))
        attempts = await _get(h, f"/api/executions/{ids[3]}")
        assert [a["outcome"] for a in attempts["attempt_history"]] == ["failed", "succeeded"]
        for body in ({"limit": -1}, {"ids": ["nope"]}, {"source": ""}, {"source": "a\x00b"}):
            assert (await _post(h, "/api/dead-letters/replay", body)).status_code == 422, body


async def _status(h: helpers.Harness, execution_id: str, status: str) -> bool:
    x = await h.store.get_execution(uuid.UUID(execution_id))
    return x is not None and x.status == status


# --- overview -----------------------------------------------------------------------------


async def test_sources_come_with_counts_and_undeclared_sources_are_listed(
    database_url: str,
) -> None:
    switch = Switch()
    async with helpers.running(flaky_app(switch), database_url, settings=ADMIN) as h:
        await h.post("billing", helpers.invoice(), key="s-1")
        await h.post("billing", helpers.invoice(amount_cents=-1), key="s-2")
        await helpers.eventually(lambda: _dead(h, 1))
        now = datetime.now(UTC)
        await h.store.ingest([_new_event("legacy", "k", now)])
        out = await _get(h, "/api/sources")
        by_name = {s["name"]: s for s in out}
        billing = by_name["billing"]
        assert billing["declared"] and billing["kind"] == "hmac" and billing["verify"] is True
        assert billing["handlers"] == ["charge", "refund"]
        assert billing["events"] == {"accepted": 1, "rejected": 1}
        assert billing["executions"]["dead"] == 1
        assert billing["last_received_at"] is not None
        legacy = by_name["legacy"]
        assert not legacy["declared"] and legacy["kind"] is None and legacy["events"]["accepted"] == 1


def _new_event(source: str, key: str, at: datetime, status: str = "accepted") -> records.NewEvent:
    return records.NewEvent(
        id=uuid.uuid4(),
        source=source,
        idempotency_key=key,
        type="t",
        status=status,  # type: ignore[arg-type]
        payload="{}",
        body=b"{}",
        headers={},
        errors=None,
        correlation_id=key,
        received_at=at,
    )


async def test_stats_count_deliveries_outcomes_and_latency_over_the_window(
    database_url: str,
) -> None:
    switch = Switch()
    async with helpers.running(flaky_app(switch), database_url, settings=ADMIN) as h:
        switch.broken = False
        for i in range(3):
            await h.post("billing", helpers.invoice(), key=f"ok-{i}")
        await h.post("billing", helpers.invoice(amount_cents=0), key="rejected")
        await helpers.eventually(lambda: _settled(h, 3))
        switch.broken = True
        await h.post("billing", helpers.invoice(), key="dies")
        await helpers.eventually(lambda: _dead(h, 1))
        for window, buckets in (("1h", 60), ("6h", 72), ("24h", 24), ("7d", 84), ("30d", 60)):
            s = await _get(h, "/api/stats", window=window)
            assert s["window"] == window and len(s["series"]) == buckets
            # aligned buckets: each starts at a whole multiple of its size; the last one is now's
            size = s["bucket_seconds"]
            starts = [datetime.fromisoformat(b["start"]).timestamp() for b in s["series"]]
            assert all(t % size == 0 for t in starts)
            assert starts[-1] <= datetime.now(UTC).timestamp() < starts[-1] + size
            assert (s["deliveries"], s["accepted"], s["rejected"]) == (5, 4, 1)
            assert (s["attempts"], s["succeeded"], s["failed"]) == (4, 3, 1)
            assert sum(b["deliveries"] for b in s["series"]) == 5
            assert sum(b["failed"] for b in s["series"]) == 1
            lat = s["latency_ms"]
            assert lat["count"] == 4 and 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
            assert s["queue"]["dead"] == 1 and s["queue"]["succeeded"] == 3
        failures = await _get(h, "/api/failures")
        assert [(f["handler"], f["status"], f["error_type"]) for f in failures] == [
            ("charge", "dead", "ConnectionError")
        ]
        assert failures[0]["source"] == "billing" and failures[0]["event_type"] == "invoice.paid"
        assert (await h.client.get("/api/stats?window=2h", headers=AUTH)).status_code == 422


async def test_stats_put_each_row_in_its_bucket_with_exact_percentiles(
    store: store_mod.Store,
) -> None:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    events = [
        _new_event("billing", "a", t0 + timedelta(seconds=5)),
        _new_event("billing", "b", t0 + timedelta(seconds=65)),
        _new_event("billing", "c", t0 + timedelta(seconds=119), status="rejected"),
        _new_event("billing", "old", t0 - timedelta(seconds=1)),
        _new_event("billing", "late", t0 + timedelta(seconds=180)),
    ]
    executions = [records.NewExecution(uuid.uuid4(), "h", 3) for _ in range(10)]
    first = events[0]
    events[0] = records.NewEvent(**{**first.__dict__, "executions": tuple(executions)})
    await store.ingest(events)
    rows = []
    for i, x in enumerate(executions):  # durations 10, 20, ... 100 ms; ends at 10 s and 70 s
        end = t0 + timedelta(seconds=10 if i < 6 else 70)
        rows.append(
            {
                "execution_id": x.id,
                "attempt": 1,
                "worker_id": "w",
                "started_at": end - timedelta(milliseconds=10 * (i + 1)),
                "ended_at": end,
                "outcome": "succeeded" if i % 5 else "failed",
            }
        )
    async with store._write() as conn:
        await conn.execute(_schema.attempts.insert(), rows)

    s = await store.stats(t0, t0 + timedelta(seconds=180), 60)
    assert [b.start for b in s.series] == [t0 + timedelta(seconds=60 * i) for i in range(3)]
    assert [b.deliveries for b in s.series] == [1, 2, 0]
    assert [b.rejected for b in s.series] == [0, 1, 0]
    assert [(b.succeeded, b.failed) for b in s.series] == [(4, 2), (4, 0), (0, 0)]
    assert (s.deliveries, s.accepted, s.rejected) == (3, 2, 1)
    assert s.latency_ms.count == 10
    assert s.latency_ms.avg == pytest.approx(55, abs=0.01)
    assert s.latency_ms.p50 == pytest.approx(50, abs=0.01)
    assert s.latency_ms.p95 == pytest.approx(100, abs=0.01)
    assert s.latency_ms.max == pytest.approx(100, abs=0.01)
    assert s.series[0].latency_ms_avg == pytest.approx(35, abs=0.01)
    empty = await store.stats(t0 - timedelta(days=2), t0 - timedelta(days=1), 3600)
    assert empty.deliveries == 0 and empty.latency_ms.p95 is None and len(empty.series) == 24


async def test_an_unreachable_store_is_a_503_with_retry_after(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:

        async def down(*_: Any, **__: Any) -> Any:
            raise errors.StoreUnavailable("store unavailable: ConnectionRefusedError")

        monkeypatch.setattr(h.store, "page_events", down)
        r = await h.client.get("/api/events", headers=AUTH)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"] == "unavailable"
        monkeypatch.setattr(h.store, "source_counts", down)
        assert (await h.client.get("/api/sources", headers=AUTH)).status_code == 503


async def test_event_detail_hides_credentials_even_in_rows_stored_with_them(
    sqlite_url: str,
) -> None:
    async with helpers.running(make_app(Effects()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        old = _new_event("billing", "legacy-row", datetime.now(UTC))
        headers = {
            "Authorization": "Bearer leaked",
            "x-hub-signature-256": "sha256=00",
            "cookie": "a=b",
            "x-api-key": "k",
            "x-event-type": "invoice.paid",
        }
        await h.store.ingest([records.NewEvent(**{**old.__dict__, "headers": headers})])
        detail = await _get(h, f"/api/events/{old.id}")
        assert detail["headers"] == {"x-event-type": "invoice.paid"}


# --- schedules ----------------------------------------------------------------------------


def cron_app(switch: Switch) -> App:
    app = flaky_app(switch)

    @app.cron("0 3 * * *", name="nightly", timezone="Europe/Paris", retry=Retry(max_attempts=1))
    async def nightly(ctx: Context) -> None:
        await ctx.step("report", lambda: {"at": ctx.scheduled_at.isoformat()})
        if switch.broken:
            raise RuntimeError("report store down")

    return app


async def test_schedules_list_trigger_pause_resume_and_history(database_url: str) -> None:
    switch = Switch()
    async with helpers.running(cron_app(switch), database_url, settings=ADMIN) as h:
        [listed] = await _get(h, "/api/schedules")
        assert listed["name"] == "nightly" and listed["expression"] == "0 3 * * *"
        assert listed["timezone"] == "Europe/Paris" and not listed["paused"]
        next_fire = datetime.fromisoformat(listed["next_fire"])
        assert next_fire > datetime.now(UTC)
        assert next_fire.astimezone(ZoneInfo("Europe/Paris")).hour == 3
        assert listed["last_fire_at"] is None and listed["failures"] == 0

        failed = await _post(h, "/api/schedules/nightly/trigger")
        assert failed.status_code == 200 and failed.json()["schedule"] == "nightly"
        first = failed.json()["execution_id"]
        await helpers.eventually(lambda: _status(h, first, "dead"))
        switch.broken = False
        await asyncio.sleep(0.002)  # two manual fires need two distinct instants
        ok = await _post(h, "/api/schedules/nightly/trigger")
        second = ok.json()["execution_id"]
        await helpers.eventually(lambda: _status(h, second, "succeeded"))

        detail = await _get(h, "/api/schedules/nightly")
        assert [
            (f["execution_id"], f["kind"], f["status"], f["execution_status"]) for f in detail["fires"]
        ] == [
            (second, "manual", "fired", "succeeded"),
            (first, "manual", "fired", "dead"),
        ]
        assert detail["fires"][1]["last_error"] == "RuntimeError: report store down"
        execution = await _get(h, f"/api/executions/{second}")
        assert execution["event"] is None and execution["handler"] == "nightly"
        assert [s["name"] for s in execution["steps"]] == ["report"]

        paused = (await _post(h, "/api/schedules/nightly/pause")).json()
        assert paused == {"schedule": "nightly", "paused": True, "changed": True}
        assert (await _post(h, "/api/schedules/nightly/pause")).json()["changed"] is False
        [listed] = await _get(h, "/api/schedules")
        assert listed["paused"] and listed["paused_at"] and listed["next_fire"] is None
        resumed = (await _post(h, "/api/schedules/nightly/resume")).json()
        assert resumed == {"schedule": "nightly", "paused": False, "changed": True}
        assert not (await _get(h, "/api/schedules"))[0]["paused"]

        for path in ("/api/schedules/nope", "/api/schedules/nope/trigger"):
            r = await (h.client.get if "trigger" not in path else h.client.post)(path, headers=AUTH)
            assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert (await _post(h, "/api/schedules/nope/pause")).status_code == 404
