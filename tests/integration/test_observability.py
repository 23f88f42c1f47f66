"""Logs, correlation, redaction, metrics, traces and health (issue: observability)."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from solo_os import App, Context, sources, testing
from solo_os import store as store_mod
from solo_os.observability import logs as slog
from tests import helpers
from tests.apps.billing import Effects, make_app

_EXPORTER = InMemorySpanExporter()
_ATTACHED: list[object] = []


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Spans of the process-wide SDK provider (set here, or by an earlier test)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if provider not in _ATTACHED:
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _ATTACHED.append(provider)
    return _EXPORTER


class Customer(BaseModel):
    id: str
    email: str
    card_number: str


def customer_app() -> App:
    app = App(service="obs-test", redact=["email", "card_number"])
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "customer.created", schema=Customer)
    async def welcome(event: Customer, ctx: Context) -> None:
        await ctx.step("greet", lambda: {"ok": True})
        ctx.log.info("welcomed", customer=event.model_dump(), note="handler log")

    return app


def _lines(out: str) -> list[dict[str, Any]]:
    found = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


async def test_json_logs_follow_one_delivery_end_to_end_without_secrets(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    slog.configure("debug", "json", "obs-test")
    secret_card = "4242424242424242"
    secret_email = "founder@example.com"
    try:
        async with helpers.running(customer_app(), database_url) as h:
            body, headers = helpers.delivery(
                {"id": "cus_1", "email": secret_email, "card_number": secret_card},
                event_type="customer.created", key="cus-evt-1",
            )
            headers["x-correlation-id"] = "corr-e2e-1"
            headers["authorization"] = "Bearer very-secret-bearer-token"
            r = await h.client.post("/webhooks/billing", content=body, headers=headers)
            assert r.status_code == 200

            async def done() -> bool:
                xs = await h.store.list_executions(store_mod.Filters())
                return bool(xs) and xs[0].status == "succeeded"

            await helpers.eventually(done)
            bad_body, bad_headers = helpers.delivery({"x": 1}, secret="not-the-secret")
            await h.client.post("/webhooks/billing", content=bad_body, headers=bad_headers)
    finally:
        slog.configure("info", "json", "solo-os")
    out = capsys.readouterr().out
    lines = _lines(out)
    mine = [e for e in lines if e.get("correlation_id") == "corr-e2e-1"]
    names = [e["event"] for e in mine]
    assert "webhook.accepted" in names and "execution.succeeded" in names and "welcomed" in names
    accepted = next(e for e in mine if e["event"] == "webhook.accepted")
    for key in ("timestamp", "level", "service", "event_id", "source", "event_type"):
        assert key in accepted, key
    assert accepted["timestamp"].endswith("Z") and accepted["service"] == "obs-test"
    done_line = next(e for e in mine if e["event"] == "execution.succeeded")
    for key in ("execution_id", "handler", "attempt", "event_id"):
        assert key in done_line, key
    welcomed = next(e for e in mine if e["event"] == "welcomed")
    assert welcomed["execution_id"] == done_line["execution_id"]  # ctx.log carries the context
    assert welcomed["customer"]["email"] == slog.REDACTED
    assert welcomed["customer"]["id"] == "cus_1"
    assert any(e["event"] == "webhook.invalid_signature" and e["reason"] for e in lines)
    for secret in (helpers.SECRET, secret_card, secret_email, "very-secret-bearer-token",
                   headers["x-signature"].split("=", 1)[1]):
        assert secret not in out, secret


async def test_metrics_count_every_outcome_and_read_queue_depth_from_the_store(
    database_url: str,
) -> None:
    clock = testing.Clock()
    def value(text: str, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and line.split("{", 1)[1].split("}", 1)[0] == want:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async with helpers.running(
        make_app(Effects()), database_url, roles=("serve",),
        settings={"SOLO_OS_MAX_BODY_BYTES": 2000, "SOLO_OS_METRICS_REFRESH_SECONDS": 0.2},
        clock=clock,
    ) as h:
        before = (await h.client.get("/metrics")).text
        await h.post("billing", helpers.invoice(), key="m1")
        await h.post("billing", helpers.invoice(), key="m1")
        await h.post("billing", helpers.invoice(amount_cents=-1), key="m2")
        await h.post("billing", helpers.invoice(), key="m3", secret="wrong")
        await h.post("billing", helpers.invoice(metadata={"pad": "x" * 3000}), key="m4")
        clock.advance(0.25)  # the store-backed gauges are cached for 0.2 s here
        after = (await h.client.get("/metrics")).text
    for outcome in ("accepted", "duplicate", "rejected", "invalid_signature", "too_large"):
        delta = value(after, "solo_os_deliveries_total", outcome=outcome, source="billing") - value(
            before, "solo_os_deliveries_total", outcome=outcome, source="billing"
        )
        assert delta == 1.0, outcome
    assert value(after, "solo_os_queue_depth", status="pending") == 2.0  # fulfil + audit
    assert 'solo_os_alert_outbox{status="pending"} 0.0' in after
    assert "solo_os_receive_to_start_seconds_bucket" in after


async def test_spans_join_ingress_execution_and_steps_across_the_queue(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with helpers.running(customer_app(), database_url) as h:
        body, headers = helpers.delivery(
            {"id": "c2", "email": "a@b.c", "card_number": "1"}, event_type="customer.created", key="t1"
        )
        headers["traceparent"] = f"00-{incoming_trace}-00f067aa0ba902b7-01"
        assert (await h.client.post("/webhooks/billing", content=body, headers=headers)).status_code == 200

        async def done() -> bool:
            xs = await h.store.list_executions(store_mod.Filters())
            return bool(xs) and xs[0].status == "succeeded"

        await helpers.eventually(done)
    finished = {s.name: s for s in spans.get_finished_spans()}
    ingress = finished["webhook.receive"]
    execute = finished["execute welcome"]
    step = finished["step greet"]
    assert format(ingress.context.trace_id, "032x") == incoming_trace
    assert execute.context.trace_id == ingress.context.trace_id
    assert execute.parent is not None and execute.parent.span_id == ingress.context.span_id
    assert step.parent is not None and step.parent.span_id == execute.context.span_id
    assert ingress.kind == trace.SpanKind.SERVER and execute.kind == trace.SpanKind.CONSUMER
    assert ingress.attributes["solo_os.outcome"] == "accepted"


async def test_health_and_readiness(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        assert (await h.client.get("/healthz")).json() == {"status": "ok"}
        ready = await h.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        async with h.store._engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'old'"))
        stale = await h.client.get("/readyz")
        assert stale.status_code == 503
        assert stale.json()["migrations"] == {"current": "old", "head": h.store.head_revision()}


async def test_a_worker_alone_serves_its_own_metrics(database_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as ingest:
        await ingest.post("billing", helpers.invoice(), key="w1")
    async with helpers.running(
        make_app(Effects()), database_url, roles=("worker",),
        settings={"SOLO_OS_METRICS_PORT": port, "SOLO_OS_METRICS_REFRESH_SECONDS": 0.2},
    ) as h:
        async def scraped() -> bool:
            async with httpx.AsyncClient() as c:
                text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
            return 'solo_os_executions_finished_total{handler="fulfil",status="succeeded"}' in text and \
                'solo_os_queue_depth{status="pending"} 0.0' in text

        await helpers.eventually(scraped, timeout=15, interval=0.3)
        assert h.runtime.worker is not None
