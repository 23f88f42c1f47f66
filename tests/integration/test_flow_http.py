"""Flow control seen from outside (issue 16), on SQLite and PostgreSQL: a key missing from
the payload, the reasons in the CLI, the admin API and the metrics, and the start-time checks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pydantic
import pytest

from solo_os import App, Concurrency, ConfigError, Context, Debounce, RateLimit, Singleton, sources
from solo_os import store as store_mod
from tests import helpers

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
SOLO_OS = str(Path(sys.executable).parent / "solo-os")


class Change(pydantic.BaseModel):
    customer_id: str
    plan: str = "pro"


def make_app(gate: asyncio.Event) -> App:
    app = App(service="flow-http")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "subscription.changed", schema=Change, concurrency=Concurrency(1, key="customer_id"))
    async def change_plan(event: Change, ctx: Context) -> None:
        await gate.wait()

    @app.on("billing", "customer.updated", debounce=Debounce(300, key="id"))
    async def sync_crm(event: dict[str, Any], ctx: Context) -> None: ...

    @app.on("billing", "report.requested", rate_limit=RateLimit(1, 3600))
    async def report(event: dict[str, Any], ctx: Context) -> None: ...

    return app


def _cli(database_url: str, *args: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "BILLING_WEBHOOK_SECRET"}
    r = subprocess.run(
        [SOLO_OS, *args, "--json"],
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


async def test_a_key_missing_from_the_payload_is_accepted_stored_and_dead_naming_the_key(
    database_url: str,
) -> None:
    app = App(service="flow-key")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "order.paid", concurrency=Concurrency(1, key="data.object.customer"))
    async def fulfil(event: dict[str, Any], ctx: Context) -> None: ...

    async with helpers.running(app, database_url) as h:
        r = await h.post("billing", {"data": {"object": {"id": "o1"}}}, event_type="order.paid", key="k1")
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        found = await h.store.get_event(uuid.UUID(r.json()["event_id"]))
        assert found is not None
        event, _ = found
        assert event.status == "accepted"
        [x] = await h.store.list_executions(store_mod.Filters(limit=0), event_id=event.id)
        assert x.status == "dead"
        assert "data.object.customer" in (x.last_error or "") and "customer" in (x.last_error or "")


async def test_reasons_in_the_cli_the_admin_api_and_the_metrics(database_url: str) -> None:
    gate = asyncio.Event()
    async with helpers.running(make_app(gate), database_url, settings={"SOLO_OS_ADMIN_TOKEN": TOKEN}) as h:
        for i in range(2):
            r = await h.post(
                "billing", {"customer_id": "cus_1", "n": i}, event_type="subscription.changed", key=f"s{i}"
            )
            assert r.status_code == 200, r.text
        for i in range(2):
            await h.post("billing", {"id": "c1", "n": i}, event_type="customer.updated", key=f"u{i}")
            await h.post("billing", {"n": i}, event_type="report.requested", key=f"r{i}")

        async def one_running() -> bool:
            c = await h.store.counts()
            return (c["running"], c["pending"], c["succeeded"]) == (1, 2, 1)

        await helpers.eventually(one_running)
        listed = await h.client.get("/api/executions", headers=AUTH, params={"status": "pending"})
        reasons = sorted(x["reason"] for x in listed.json()["items"])
        assert reasons == ["concurrency", "debounce"], listed.text
        skipped = await h.client.get("/api/executions", headers=AUTH, params={"status": "skipped"})
        assert sorted(x["reason"] for x in skipped.json()["items"]) == ["debounced", "rate_limited"]

        rows = await asyncio.to_thread(_cli, database_url, "executions", "list", "--status", "pending")
        assert sorted((x["handler"], x["reason"]) for x in rows) == [
            ("change_plan", "concurrency"),
            ("sync_crm", "debounce"),
        ]
        rows = await asyncio.to_thread(_cli, database_url, "executions", "list", "--status", "skipped")
        assert sorted((x["handler"], x["reason"]) for x in rows) == [
            ("report", "rate_limited"),
            ("sync_crm", "debounced"),
        ]

        metrics = (await h.client.get("/metrics", headers=AUTH)).text
        assert 'solo_os_waiting_executions{reason="debounce"} 1.0' in metrics
        assert 'solo_os_waiting_executions{reason="concurrency"} 1.0' in metrics
        gate.set()


def test_options_are_checked_at_start_with_clear_errors() -> None:
    app = App(service="flow-bad")
    with pytest.raises(ConfigError, match="has no field 'customer'"):
        app.on("billing", "x", schema=Change, concurrency=Concurrency(1, key="customer"))(lambda e, c: None)
    with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
        Concurrency(0)
    with pytest.raises(ConfigError, match="period must be a positive"):
        RateLimit(5, 0)
    with pytest.raises(ConfigError, match="mode must be"):
        Singleton(mode="replace")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="priority must be an integer from -600 to 600"):
        app.on("billing", "x", priority=601)(lambda e, c: None)
    with pytest.raises(ConfigError, match="cannot be combined"):
        app.on("billing", "x", debounce=Debounce(5), singleton=Singleton())(lambda e, c: None)
    app.on("billing", "a", concurrency=Concurrency(2, scope="stripe"), name="a")(lambda e, c: None)
    with pytest.raises(ConfigError, match="scope 'stripe' has limit 2"):
        app.on("billing", "b", concurrency=Concurrency(3, scope="stripe"), name="b")(lambda e, c: None)
