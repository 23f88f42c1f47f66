"""The admin API's search, filters, handler logs and actions (re-run, resend, cancel, purge),
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from solo_os import App, Context, Retry, sources
from solo_os import store as store_mod
from solo_os.runtime import capture as _capture
from solo_os.store import _admin, _schema
from tests import helpers
from tests.conftest import _PG_BASE, PG_ADMIN_URL

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN = {"SOLO_OS_ADMIN_TOKEN": TOKEN}


class Switch:
    broken = False
    lines = 3


def search_app(switch: Switch) -> App:
    app = App(service="admin-search-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", retry=Retry(max_attempts=2, base_delay=0))
    async def charge(event: dict[str, Any], ctx: Context) -> None:
        ctx.log.info("charging", customer=event.get("customer"), api_token="tok-very-private")
        for i in range(switch.lines - 1):
            ctx.log.bind(step=i).debug("detail %s", i)
        if switch.broken:
            ctx.log.error("provider said no", reply=f"denied; key was {helpers.SECRET}")
            raise ConnectionError("provider down")

    @app.on("billing", "invoice.paid", name="audit")
    def audit(event: dict[str, Any], ctx: Context) -> None:
        ctx.log.warning("audited from a thread", amount=event.get("amount_cents"))

    @app.cron("0 3 * * *", name="nightly")
    async def nightly(ctx: Context) -> None:
        ctx.log.info("nightly ran")

    return app


async def _get(h: helpers.Harness, path: str, **params: Any) -> Any:
    r = await h.client.get(path, headers=AUTH, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def _post(h: helpers.Harness, path: str, body: Any = None) -> httpx.Response:
    return await h.client.post(path, headers=AUTH, json=body)


async def _settled(h: helpers.Harness, n: int) -> bool:
    rows = await h.store.list_executions(store_mod.Filters(limit=0))
    return len(rows) >= n and all(r.status in ("succeeded", "dead", "cancelled") for r in rows)


# --- search -----------------------------------------------------------------------------------


async def test_search_finds_events_and_executions_by_id_key_correlation_and_payload_text(
    database_url: str,
) -> None:
    async with helpers.running(search_app(Switch()), database_url, settings=ADMIN) as h:
        ids = {}
        for i, customer in enumerate(["cus_Alpha%42", "cus_beta_7", "cus_gamma"]):
            r = await h.post("billing", helpers.invoice(customer=customer), key=f"key-{i}")
            ids[customer] = r.json()["event_id"]
        await helpers.eventually(lambda: _settled(h, 6))

        def keys(page: dict[str, Any]) -> list[str]:
            return sorted(e["idempotency_key"] for e in page["items"])

        by_text = await _get(h, "/api/events", q="ALPHA")  # case-insensitive substring
        assert keys(by_text) == ["key-0"]
        assert by_text["search_indexed"] is (h.store.dialect == "postgresql")
        assert keys(await _get(h, "/api/events", q="%42")) == ["key-0"]  # % is literal
        assert keys(await _get(h, "/api/events", q="a_m")) == []  # so is _ ("gamma" has "amm")
        assert keys(await _get(h, "/api/events", q="us_beta_")) == ["key-1"]
        assert keys(await _get(h, "/api/events", q="cus_")) == ["key-0", "key-1", "key-2"]
        assert keys(await _get(h, "/api/events", q="key-2")) == ["key-2"]
        assert keys(await _get(h, "/api/events", q=ids["cus_gamma"])) == ["key-2"]
        event = await _get(h, f"/api/events/{ids['cus_beta_7']}")
        assert keys(await _get(h, "/api/events", q=event["correlation_id"])) == ["key-1"]
        assert keys(await _get(h, "/api/events", q="no-such-thing")) == []
        assert keys(await _get(h, "/api/events", q="cus_", status="rejected")) == []

        def handlers(page: dict[str, Any]) -> list[str]:
            return sorted(x["handler"] for x in page["items"])

        runs = await _get(h, "/api/executions", q=ids["cus_gamma"])
        assert handlers(runs) == ["audit", "charge"]
        assert {x["event_id"] for x in runs["items"]} == {ids["cus_gamma"]}
        assert handlers(await _get(h, "/api/executions", q="key-1")) == ["audit", "charge"]
        assert handlers(await _get(h, "/api/executions", q=event["correlation_id"])) == ["audit", "charge"]
        one = runs["items"][0]
        assert [x["id"] for x in (await _get(h, "/api/executions", q=one["id"]))["items"]] == [one["id"]]
        assert (await _get(h, "/api/executions", q="key-1", handler="audit"))["items"][0][
            "handler"
        ] == "audit"
        bad = await h.client.get("/api/events", headers=AUTH, params={"q": "a\x00b"})
        assert bad.status_code == 422


async def test_payload_search_without_an_index_is_a_bounded_scan_of_the_newest_events(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_admin, "SEARCH_SCAN", 3)
    async with helpers.running(search_app(Switch()), database_url, roles=("serve",), settings=ADMIN) as h:
        h.store._payload_trgm = False  # as on PostgreSQL without pg_trgm
        for i in range(5):
            await h.post("billing", helpers.invoice(customer=f"needle-{i}"), key=f"k-{i}")
            await asyncio.sleep(0.002)
        page = await _get(h, "/api/events", q="needle")
        assert [e["idempotency_key"] for e in page["items"]] == ["k-4", "k-3", "k-2"]
        assert page["search_indexed"] is False
        floor = page["payload_searched_since"]
        assert floor is not None
        # the exact matches reach past the bound; an until= moves the window back
        assert [e["idempotency_key"] for e in (await _get(h, "/api/events", q="k-0"))["items"]] == ["k-0"]
        older = await _get(h, "/api/events", q="needle", until=floor)
        assert [e["idempotency_key"] for e in older["items"]] == ["k-1", "k-0"]
        assert older["payload_searched_since"] is None


@pytest.mark.postgres
async def test_postgres_payload_search_uses_the_trigram_index(pg_url: str) -> None:
    s = store_mod.connect(pg_url)
    try:
        assert await s._has_payload_index()
        search = await s.search("needle-77", store_mod.Filters())
        assert search.indexed
        q = (
            sa.select(_schema.events.c.id)
            .where(_admin._event_match(search))
            .order_by(_schema.events.c.received_at.desc())
            .limit(51)
        )
        async with s._write() as conn:
            # 30 000 events, one of them with the needle; the planner must not scan them all
            await conn.execute(
                sa.text(
                    "INSERT INTO events (id, source, idempotency_key, type, status, payload, body, "
                    "correlation_id, received_at, updated_at) "
                    "SELECT gen_random_uuid(), 'billing', 'k' || i, 'invoice.paid', 'accepted', "
                    "jsonb_build_object('customer', 'cus-' || md5(i::text), 'n', i), '', md5(i::text), "
                    "now() - i * interval '1 second', now() FROM generate_series(1, 30000) i"
                )
            )
            await conn.execute(
                sa.text(
                    'UPDATE events SET payload = payload || \'{"note": "needle-77"}\' '
                    "WHERE idempotency_key = 'k29000'"
                )
            )
            await conn.execute(sa.text("ANALYZE events"))
            compiled = q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in await conn.execute(sa.text(f"EXPLAIN {compiled}")))
        assert "ix_events_payload_trgm" in plan, plan
        started = asyncio.get_running_loop().time()
        found = await s.page_events(store_mod.Filters(limit=51), search=search)
        elapsed = asyncio.get_running_loop().time() - started
        assert [e.idempotency_key for e in found] == ["k29000"]
        print(f"\npayload search over 30k events: {elapsed * 1000:.1f} ms")
    finally:
        await s.close()


# --- filters and durations --------------------------------------------------------------------


async def test_executions_filter_by_kind_and_time_and_lists_show_durations(database_url: str) -> None:
    async with helpers.running(search_app(Switch()), database_url, settings=ADMIN) as h:
        await h.post("billing", helpers.invoice(), key="k-1")
        r = await _post(h, "/api/schedules/nightly/trigger")
        assert r.status_code == 200
        await helpers.eventually(lambda: _settled(h, 3))

        def handlers(page: dict[str, Any]) -> list[str]:
            return sorted(x["handler"] for x in page["items"])

        assert handlers(await _get(h, "/api/executions", kind="cron")) == ["nightly"]
        assert handlers(await _get(h, "/api/executions", kind="webhook")) == ["audit", "charge"]
        everything = await _get(h, "/api/executions")
        assert handlers(everything) == ["audit", "charge", "nightly"]
        for x in everything["items"]:
            assert x["kind"] == ("cron" if x["handler"] == "nightly" else "webhook")
            assert x["status"] == "succeeded"
            assert x["duration_ms"] is not None and 0 <= x["duration_ms"] < 10_000
        detail = await _get(h, f"/api/executions/{everything['items'][0]['id']}")
        assert detail["duration_ms"] == pytest.approx(
            sum(a["duration_ms"] for a in detail["attempt_history"])
        )
        event = (await _get(h, "/api/events"))["items"][0]
        assert all(
            x["duration_ms"] is not None for x in (await _get(h, f"/api/events/{event['id']}"))["executions"]
        )

        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        assert (await _get(h, "/api/executions", since=future))["items"] == []
        assert handlers(await _get(h, "/api/executions", since=past, until=future, kind="cron")) == [
            "nightly"
        ]
        assert (await _get(h, "/api/events", since=future))["items"] == []
        assert len((await _get(h, "/api/events", since=past, until=future))["items"]) == 1
        assert (
            await h.client.get("/api/executions", headers=AUTH, params={"kind": "email"})
        ).status_code == 422


# --- handler logs -----------------------------------------------------------------------------


async def test_handler_log_lines_are_kept_per_attempt_redacted_and_bounded(database_url: str) -> None:
    switch = Switch()
    switch.broken = True
    async with helpers.running(search_app(switch), database_url, settings=ADMIN) as h:
        await h.post("billing", helpers.invoice(customer="cus_1"), key="k-1")
        await helpers.eventually(lambda: _settled(h, 2))
        runs = {x["handler"]: x for x in (await _get(h, "/api/executions"))["items"]}
        charge = await _get(h, f"/api/executions/{runs['charge']['id']}")
        assert charge["status"] == "dead" and charge["attempts"] == 2
        logs = charge["logs"]
        assert [(line["attempt"], line["seq"]) for line in logs] == [(a, s) for a in (1, 2) for s in range(4)]
        first = logs[0]
        assert first["level"] == "info" and first["message"] == "charging"
        assert first["fields"] == {"customer": "cus_1", "api_token": "[redacted]"}
        assert [line["message"] for line in logs[1:3]] == ["detail 0", "detail 1"]
        assert logs[1]["level"] == "debug" and logs[1]["fields"] == {"step": 0}
        assert logs[3]["level"] == "error" and logs[3]["fields"] == {"reply": "denied; key was [redacted]"}
        text = str(charge)
        assert "tok-very-private" not in text and helpers.SECRET not in text
        audit = await _get(h, f"/api/executions/{runs['audit']['id']}")
        assert [(line["level"], line["message"]) for line in audit["logs"]] == [
            ("warning", "audited from a thread")
        ]

        # bounded: a handler that logs too much keeps the first lines and a count of the rest
        switch.broken = False
        switch.lines = _capture.MAX_LINES + 40
        await h.post("billing", helpers.invoice(), key="k-2")
        await helpers.eventually(lambda: _settled(h, 4))
        chatty = next(
            x for x in (await _get(h, "/api/executions", q="k-2"))["items"] if x["handler"] == "charge"
        )
        lines = (await _get(h, f"/api/executions/{chatty['id']}"))["logs"]
        assert len(lines) == _capture.MAX_LINES + 1
        assert lines[-1]["message"].startswith("40 more line(s) not kept")

        # the lines go with their execution: purge and retention delete them
        async def log_rows() -> int:
            async with h.store._read() as conn:
                return int(await conn.scalar(sa.select(sa.func.count()).select_from(_schema.execution_logs)))

        before = await log_rows()
        assert before == 8 + 1 + (_capture.MAX_LINES + 1) + 1
        purged = await _post(h, f"/api/dead-letters/{charge['id']}/purge")
        assert purged.status_code == 200 and purged.json()["changed"] == 1
        assert await log_rows() == before - 8
        await h.store.prune(timedelta(0), now=datetime.now(UTC) + timedelta(seconds=1))
        assert await log_rows() == 0


def test_a_long_line_is_clipped_and_a_buffer_takes_at_most_max_lines() -> None:
    buffer = _capture.Buffer()
    buffer.add("info", "x" * 5000, {"blob": "y" * 5000})
    [line] = buffer.final()
    assert len(line.message) == _capture.MAX_LINE_CHARS
    assert line.fields is not None and len(line.fields["truncated"]) <= _capture.MAX_LINE_CHARS
    for i in range(_capture.MAX_LINES + 5):
        buffer.add("info", f"line {i}", {})
    lines = buffer.final()
    assert len(lines) == _capture.MAX_LINES + 1 and buffer.dropped == 6


# --- actions ----------------------------------------------------------------------------------


async def test_rerun_and_resend_start_new_executions_and_keep_history(database_url: str) -> None:
    async with helpers.running(search_app(Switch()), database_url, settings=ADMIN) as h:
        r = await h.post("billing", helpers.invoice(), key="k-1")
        event_id = r.json()["event_id"]
        await helpers.eventually(lambda: _settled(h, 2))
        first = {x["handler"]: x for x in (await _get(h, "/api/executions"))["items"]}

        rerun = await _post(h, f"/api/executions/{first['charge']['id']}/rerun")
        assert rerun.status_code == 200, rerun.text
        [new_id] = rerun.json()["execution_ids"]
        assert new_id != first["charge"]["id"]
        await helpers.eventually(lambda: _settled(h, 3))
        new = await _get(h, f"/api/executions/{new_id}")
        assert new["status"] == "succeeded" and new["event_id"] == event_id and new["handler"] == "charge"
        assert new["correlation_id"] == first["charge"]["correlation_id"]
        old = await _get(h, f"/api/executions/{first['charge']['id']}")
        assert old["status"] == "succeeded" and len(old["attempt_history"]) == 1

        resend = await _post(h, f"/api/events/{event_id}/resend")
        assert resend.status_code == 200, resend.text
        assert len(resend.json()["execution_ids"]) == 2
        await helpers.eventually(lambda: _settled(h, 5))
        runs = (await _get(h, f"/api/events/{event_id}"))["executions"]
        assert sorted(x["handler"] for x in runs) == ["audit", "audit", "charge", "charge", "charge"]
        assert all(x["status"] == "succeeded" for x in runs)

        assert (await _post(h, f"/api/executions/{uuid.uuid4()}/rerun")).status_code == 404
        assert (await _post(h, f"/api/events/{uuid.uuid4()}/resend")).status_code == 404
        assert (await h.post("billing", b"not json", key="bad")).status_code == 400
        [rejected] = (await _get(h, "/api/events", status="rejected"))["items"]
        bad = await _post(h, f"/api/events/{rejected['id']}/resend")
        assert bad.status_code == 409 and "revalidate" in bad.json()["message"]


async def test_cancel_takes_only_pending_executions_and_purge_only_dead_ones(database_url: str) -> None:
    async with helpers.running(search_app(Switch()), database_url, roles=("serve",), settings=ADMIN) as h:
        for i in range(3):
            await h.post("billing", helpers.invoice(), key=f"k-{i}")
        pending = (await _get(h, "/api/executions", status="pending"))["items"]
        assert len(pending) == 6
        one = pending[0]["id"]
        done = await _post(h, f"/api/executions/{one}/cancel")
        assert done.status_code == 200 and done.json()["changed"] == 1
        again = await _post(h, f"/api/executions/{one}/cancel")
        assert again.status_code == 409 and "cancelled" in again.json()["message"]
        assert (await _post(h, f"/api/executions/{uuid.uuid4()}/cancel")).status_code == 404

        dry = await _post(h, "/api/executions/cancel", {"handler": "audit", "dry_run": True})
        assert dry.json()["matched"] == (3 if pending[0]["handler"] == "charge" else 2)
        assert dry.json()["changed"] == 0
        assert len((await _get(h, "/api/executions", status="pending"))["items"]) == 5
        bulk = await _post(h, "/api/executions/cancel", {"handler": "audit"})
        assert bulk.json()["changed"] == dry.json()["matched"]
        left = (await _get(h, "/api/executions", status="pending"))["items"]
        assert {x["handler"] for x in left} == {"charge"}

        # a cancelled execution can run again as a new one; a pending one cannot be re-run
        assert (await _post(h, f"/api/executions/{left[0]['id']}/rerun")).status_code == 409
        assert (await _post(h, f"/api/executions/{one}/rerun")).status_code == 200

        # purge takes dead executions only (here: none is dead)
        assert (await _post(h, f"/api/dead-letters/{left[0]['id']}/purge")).status_code == 409
        nothing = await _post(h, "/api/dead-letters/purge", {"dry_run": True})
        assert nothing.json()["matched"] == 0


async def test_purge_of_matching_dead_letters_keeps_their_events(database_url: str) -> None:
    switch = Switch()
    switch.broken = True
    async with helpers.running(search_app(switch), database_url, settings=ADMIN) as h:
        for i in range(2):
            await h.post("billing", helpers.invoice(), key=f"k-{i}")
        await helpers.eventually(lambda: _settled(h, 4))
        dry = (await _post(h, "/api/dead-letters/purge", {"handler": "charge", "dry_run": True})).json()
        assert dry["matched"] == 2 and dry["changed"] == 0
        done = (await _post(h, "/api/dead-letters/purge", {"handler": "charge"})).json()
        assert done["changed"] == 2 and sorted(done["ids"]) == sorted(dry["ids"])
        assert (await _get(h, "/api/dead-letters"))["items"] == []
        assert len((await _get(h, "/api/events"))["items"]) == 2
        assert {x["handler"] for x in (await _get(h, "/api/executions"))["items"]} == {"audit"}


async def test_cancel_racing_workers_never_cancels_a_started_execution(database_url: str) -> None:
    """Cancels and claims race on the same rows: each execution is cancelled or run, not both."""
    async with helpers.running(search_app(Switch()), database_url, settings=ADMIN, concurrency=4) as h:
        posts = [h.post("billing", helpers.invoice(), key=f"race-{i}") for i in range(30)]
        await asyncio.gather(*posts)
        ids = [x.id for x in await h.store.list_executions(store_mod.Filters(limit=0))]
        results = await asyncio.gather(
            *(_post(h, f"/api/executions/{i}/cancel") for i in ids), return_exceptions=True
        )
        cancelled = {
            i
            for i, r in zip(ids, results, strict=True)
            if isinstance(r, httpx.Response) and r.status_code == 200
        }
        for r in results:
            assert isinstance(r, httpx.Response) and r.status_code in (200, 409), r
        await helpers.eventually(lambda: _settled(h, 60))
        for x in await h.store.list_executions(store_mod.Filters(limit=0)):
            if x.id in cancelled:
                assert x.status == "cancelled" and x.attempts == 0
            else:
                assert x.status == "succeeded" and x.attempts == 1


async def test_new_actions_need_the_csrf_token_with_a_session(sqlite_url: str) -> None:
    async with helpers.running(search_app(Switch()), sqlite_url, roles=("serve",), settings=ADMIN) as h:
        r = await h.post("billing", helpers.invoice(), key="k-1")
        event_id = r.json()["event_id"]
        login = await h.client.post("/dashboard/session", json={"token": TOKEN})
        csrf = login.json()["csrf_token"]
        xid = (await h.client.get("/api/executions")).json()["items"][0]["id"]
        for path, body in [
            (f"/api/executions/{xid}/cancel", None),
            ("/api/executions/cancel", {"dry_run": True}),
            (f"/api/executions/{xid}/rerun", None),
            (f"/api/events/{event_id}/resend", None),
            ("/api/dead-letters/purge", {"dry_run": True}),
            (f"/api/dead-letters/{xid}/purge", None),
        ]:
            assert (await h.client.post(path, json=body)).status_code == 403, path
        ok = await h.client.post(f"/api/executions/{xid}/cancel", headers={"x-csrf-token": csrf})
        assert ok.status_code == 200


@pytest.mark.postgres
async def test_without_the_right_to_create_pg_trgm_migrations_pass_and_search_scans(pg_template: str) -> None:
    """A role that may create tables but not extensions: 0005 skips the trigram index."""
    suffix = uuid.uuid4().hex[:10]
    role, db = f"solo_os_r_{suffix}", f"solo_os_noext_{suffix}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'CREATE DATABASE "{db}"')
        in_db = await asyncpg.connect(f"{_PG_BASE}/{db}")
        try:
            await in_db.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
            await in_db.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
        finally:
            await in_db.close()
        s = store_mod.connect(f"{_PG_BASE.replace('postgres@', f'{role}@')}/{db}")
        try:
            await s.migrate()
            assert await s.current_revision() == s.head_revision()
            assert not await s._has_payload_index()
            search = await s.search("needle", store_mod.Filters())
            assert not search.indexed and search.payload_since is None  # an empty table: no bound
            assert await s.page_events(store_mod.Filters(), search=search) == []
        finally:
            await s.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
