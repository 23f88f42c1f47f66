"""/metrics: Prometheus naming, attempts vs executions, cached store gauges, where and to whom
it is served (issue 20, item 5)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import prometheus_client
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from solo_os import App, Context, Retry, errors, sources, testing
from solo_os import store as store_mod
from solo_os.observability import metrics
from solo_os.runtime import runtime as runtime_mod
from solo_os.testing import Clock
from tests import helpers
from tests.apps.billing import Effects, make_app

TOKEN = "metrics-admin-token-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def flaky_app() -> App:
    """``charge`` fails its first attempt and succeeds on the second; ``doomed`` always fails."""
    app = App(service="metrics-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    tries: dict[str, int] = {}

    @app.on("billing", "invoice.paid", retry=Retry(max_attempts=3))
    async def charge(event: Any, ctx: Context) -> None:
        tries[event["id"]] = tries.get(event["id"], 0) + 1
        if tries[event["id"]] == 1:
            raise RuntimeError("card network hiccup")

    @app.on("billing", "invoice.voided", retry=Retry(max_attempts=2))
    async def doomed(event: Any, ctx: Context) -> None:
        raise RuntimeError("always")

    return app


async def test_attempts_and_executions_are_counted_apart_with_conventional_series(
    database_url: str,
) -> None:
    clock = testing.Clock()
    async with helpers.running(
        flaky_app(), database_url, settings={"SOLO_OS_METRICS_REFRESH_SECONDS": 0.05}, clock=clock
    ) as h:
        before = samples((await h.client.get("/metrics")).text)
        assert (await h.post("billing", {"id": "i1"}, key="a1")).status_code == 200
        assert (
            await h.post("billing", {"id": "v1"}, key="a2", event_type="invoice.voided")
        ).status_code == 200

        async def finished() -> bool:
            counts = await h.store.counts()
            return counts["succeeded"] == 1 and counts["dead"] == 1

        await helpers.eventually(finished)
        clock.advance(0.06)  # past the gauges' cache interval
        text = (await h.client.get("/metrics")).text
    after = samples(text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # charge: two attempts (failed, succeeded), one execution that succeeded
    assert delta("solo_os_attempts_total", handler="charge", outcome="failed") == 1
    assert delta("solo_os_attempts_total", handler="charge", outcome="succeeded") == 1
    assert delta("solo_os_executions_finished_total", handler="charge", status="succeeded") == 1
    # doomed: two failed attempts, one dead execution
    assert delta("solo_os_attempts_total", handler="doomed", outcome="failed") == 2
    assert delta("solo_os_executions_finished_total", handler="doomed", status="dead") == 1
    assert delta("solo_os_attempt_duration_seconds_count", handler="charge") == 2
    # the old name that counted attempts as executions is gone
    assert "solo_os_executions_total" not in text
    # no _created series at all
    # (by series name: a handler called "order_created" in a label is not such a series)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    series = {line.split("{")[0].split(" ")[0] for line in lines}
    assert series and not [name for name in series if name.endswith("_created")]
    # queue depth: live states only, and nothing is live any more
    depth = {
        dict(labels)["status"]: v for (name, labels), v in after.items() if name == "solo_os_queue_depth"
    }
    assert set(depth) == {"pending", "running", "waiting"} and set(depth.values()) == {0.0}
    assert value(after, "solo_os_store_up") == 1.0
    # histogram buckets reach the default handler timeout (300 s)
    assert (
        "solo_os_attempt_duration_seconds_bucket",
        frozenset({("handler", "charge"), ("le", "300.0")}),
    ) in after
    assert ("solo_os_receive_to_start_seconds_bucket", frozenset({("le", "300.0")})) in after
    info = [dict(labels) for (name, labels), v in after.items() if name == "solo_os_build_info" and v == 1]
    assert len(info) == 1 and info[0]["version"] and info[0]["python_version"].count(".") == 2


@asynccontextmanager
async def _serving(
    database_url: str, clock: Clock, **settings: Any
) -> AsyncIterator[tuple[runtime_mod.Runtime, httpx.AsyncClient, list[str]]]:
    """An ingress-only runtime on the test clock, and every SQL statement it runs."""
    app = make_app(Effects())
    app._settings = helpers.settings_for(database_url, **settings)
    rt = runtime_mod.Runtime(
        app, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}, clock=clock
    )
    await rt.start()
    assert rt.store is not None
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engines = {id(e): e.sync_engine for e in (rt.store._engine, rt.store._read_engine)}.values()
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", seen)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rt.asgi(lifespan=False)), base_url="http://solo-os.test"
    )
    try:
        yield rt, client, statements
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", seen)
        await client.aclose()
        await rt.stop()


def _figure_reads(statements: list[str]) -> int:
    return sum(
        1 for s in statements
        if ("count(" in s.lower() and "group by" in s.lower()) or "sum(case" in s.lower()
    )


async def test_many_scrapes_read_the_store_at_most_once_per_interval(database_url: str) -> None:
    clock = Clock()
    async with _serving(database_url, clock, SOLO_OS_METRICS_REFRESH_SECONDS=10) as (rt, client, sql):
        # 20 scrapes at once, then 20 one after another, within one interval: one refresh,
        # which is three statements (executions by status, alert deliveries by status,
        # pending executions held back by flow control, by reason).
        bodies = await asyncio.gather(*(client.get("/metrics") for _ in range(20)))
        for _ in range(20):
            bodies.append(await client.get("/metrics"))
            clock.advance(0.2)  # 4 s in all: still inside the 10 s interval
        assert all(r.status_code == 200 for r in bodies)
        assert _figure_reads(sql) == 3 and rt.gauges.refreshes == 1
        # a new delivery is seen once the interval is over, not before
        assert (
            await client.post(
                "/webhooks/billing",
                content=(d := helpers.delivery(helpers.invoice(), key="c1"))[0],
                headers=d[1],
            )
        ).status_code == 200
        stale = samples((await client.get("/metrics")).text)
        assert value(stale, "solo_os_queue_depth", status="pending") == 0
        assert value(stale, "solo_os_store_gauges_age_seconds") == pytest.approx(4.0)
        clock.advance(6.0)
        fresh = samples((await client.get("/metrics")).text)
        assert value(fresh, "solo_os_queue_depth", status="pending") == 2  # fulfil + audit
        assert value(fresh, "solo_os_store_gauges_age_seconds") == 0
        assert _figure_reads(sql) == 6 and rt.gauges.refreshes == 2
        for _ in range(10):
            await client.get("/metrics")
        assert _figure_reads(sql) == 6


async def test_metrics_behind_the_admin_token(sqlite_url: str) -> None:
    async with _serving(sqlite_url, Clock(), SOLO_OS_ADMIN_TOKEN=TOKEN, SOLO_OS_METRICS_AUTH="token") as (
        _rt,
        client,
        _sql,
    ):
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "solo_os" not in anonymous.text
        wrong = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "solo_os_build_info" in ok.text
        # the webhook route is unaffected
        body, headers = helpers.delivery(helpers.invoice(), key="t1")
        assert (await client.post("/webhooks/billing", content=body, headers=headers)).status_code == 200


def test_token_auth_without_a_token_is_a_config_error() -> None:
    from solo_os import config

    with pytest.raises(errors.ConfigError, match="SOLO_OS_ADMIN_TOKEN"):
        config.load(SOLO_OS_METRICS_AUTH="token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_on_a_port_of_their_own_with_the_token(database_url: str) -> None:
    port = _free_port()
    clock = Clock()
    async with _serving(
        database_url,
        clock,
        SOLO_OS_METRICS_PORT=port,
        SOLO_OS_METRICS_HOST="127.0.0.1",
        SOLO_OS_ADMIN_TOKEN=TOKEN,
        SOLO_OS_METRICS_AUTH="token",
        SOLO_OS_METRICS_REFRESH_SECONDS=5,
    ) as (rt, client, sql):
        body, headers = helpers.delivery(helpers.invoice(), key="p1")
        assert (await client.post("/webhooks/billing", content=body, headers=headers)).status_code == 200
        assert (await client.get("/metrics")).status_code == 404  # not on the webhook port any more
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as own:
            assert (await own.get("/metrics")).status_code == 401
            auth = {"authorization": f"Bearer {TOKEN}"}
            scrapes = await asyncio.gather(*(own.get("/metrics", headers=auth) for _ in range(10)))
            assert {r.status_code for r in scrapes} == {200}
            found = samples(scrapes[0].text)
            assert value(found, "solo_os_deliveries_total", source="billing", outcome="accepted") >= 1
            assert value(found, "solo_os_queue_depth", status="pending") == 2
            assert (await own.get("/other", headers=auth)).status_code == 404
            assert (await own.post("/metrics", headers=auth)).status_code == 405
        assert _figure_reads(sql) == 3 and rt.gauges.refreshes == 1
    # stopped: the port is free again
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


async def test_a_taken_metrics_port_is_one_clear_error(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        app = make_app(Effects())
        app._settings = helpers.settings_for(
            sqlite_url, SOLO_OS_METRICS_PORT=port, SOLO_OS_METRICS_HOST="127.0.0.1"
        )
        rt = runtime_mod.Runtime(app, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET})
        try:
            expected = f"SOLO_OS_METRICS_PORT: cannot listen on 127.0.0.1:{port}"
            with pytest.raises(errors.ConfigError, match=expected):
                await rt.start()
        finally:
            await rt.stop()


def test_the_gauges_cache_expires_with_the_clock() -> None:
    from solo_os.observability import metrics

    clock = Clock()
    gauges = metrics.StoreGauges(5.0, clock)
    assert not gauges._fresh(clock())
    gauges._at = clock()
    assert gauges._fresh(clock() + timedelta(seconds=4.9))
    assert not gauges._fresh(clock() + timedelta(seconds=5))
    assert not gauges._fresh(clock() - timedelta(seconds=1))  # a clock that went back: stale


async def test_a_lost_attempt_is_counted_and_a_poison_execution_finishes_dead(database_url: str) -> None:
    """An attempt lost with its process (lease expired) counts as ``lost``; with
    ``SOLO_OS_MAX_LOSSES=1`` that execution is dead, and counted as finished dead."""
    app = make_app(Effects())
    async with helpers.running(app, database_url, roles=("serve",)) as ingest:
        assert (await ingest.post("billing", helpers.invoice(), key="lost-1")).status_code == 200
        # a process that claims the work and is never heard from again
        claimed = await ingest.store.claim("ghost:1:dead", 10, store_mod.utcnow(), 1.0)
        assert {c.handler for c in claimed} == {"fulfil", "audit"}
    before = samples(prometheus_client.generate_latest(metrics.registry).decode())
    async with helpers.running(
        app, database_url, roles=("worker",), settings={"SOLO_OS_MAX_LOSSES": 1}, lease_seconds=1.0
    ) as h:

        async def reaped() -> bool:
            return (await h.store.counts())["dead"] == 2

        await helpers.eventually(reaped, timeout=20, interval=0.1)
    after = samples(prometheus_client.generate_latest(metrics.registry).decode())
    for handler in ("fulfil", "audit"):
        lost = value(after, "solo_os_attempts_total", handler=handler, outcome="lost")
        assert lost - value(before, "solo_os_attempts_total", handler=handler, outcome="lost") == 1
        dead = value(after, "solo_os_executions_finished_total", handler=handler, status="dead")
        assert dead - value(before, "solo_os_executions_finished_total", handler=handler, status="dead") == 1
