"""The seed's billing flow: a signed ``invoice.paid`` webhook fulfils an order exactly once.

Run it from the repository's root (``python3 scripts/dev.py run`` does the same, with this
development secret):

    export BILLING_WEBHOOK_SECRET=dev-secret-change-me
    .venv/bin/solo-os run examples/billing/app.py

Then, in another shell there, send it a signed delivery and see it handled:

    export BILLING_WEBHOOK_SECRET=dev-secret-change-me
    .venv/bin/solo-os send billing invoice.paid -d examples/billing/invoice.json -a examples/billing/app.py
    .venv/bin/solo-os executions list

Each fulfilment is written to a small SQLite ledger (``FULFILMENTS_DB``, default
``./fulfilments.db``) so that tests can count effects: one row per fulfilled invoice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel, Field, PositiveInt

from solo_os import App, Context, NonRetryable, Retry, config, sources
from solo_os import store as store_mod
from solo_os.runtime import ingress

app = App(service="billing")


class InvoicePaid(BaseModel):
    """The seed's InvoicePaidEvent."""

    id: UUID
    customer_id: UUID
    amount_cents: PositiveInt
    currency: str = Field(min_length=3, max_length=3)
    paid_at: datetime
    metadata: dict[str, Any] | None = None


app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


def _ledger() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ.get("FULFILMENTS_DB", "fulfilments.db"), timeout=30)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS fulfilments ("
        " invoice_id TEXT NOT NULL, event_id TEXT NOT NULL, execution_id TEXT NOT NULL,"
        " receipt_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, at TEXT NOT NULL)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS audit (event_id TEXT NOT NULL, type TEXT NOT NULL)")
    return conn


def send_receipt(invoice: InvoicePaid) -> dict[str, str]:
    """Stands in for an email API call; a durable step, so a retry does not send it twice."""
    return {"id": f"rcpt_{uuid.uuid4().hex[:12]}", "to": str(invoice.customer_id)}


def record_fulfilment(invoice: InvoicePaid, ctx: Context, receipt_id: str) -> None:
    assert ctx.event is not None
    with _ledger() as conn:
        conn.execute(
            "INSERT INTO fulfilments VALUES (?, ?, ?, ?, ?, ?)",
            (str(invoice.id), str(ctx.event.id), str(ctx.execution_id), receipt_id,
             invoice.amount_cents, datetime.now(UTC).isoformat()),
        )


@app.on("billing", "invoice.paid", schema=InvoicePaid, retry=Retry(max_attempts=5))
async def fulfil(event: InvoicePaid, ctx: Context) -> None:
    receipt = await ctx.step("send-receipt", send_receipt, event)
    await ctx.step("record-fulfilment", record_fulfilment, event, ctx, receipt["id"])
    ctx.log.info("fulfilled", invoice_id=str(event.id), receipt_id=receipt["id"])


@app.on("billing", "*")
def audit(event: dict[str, Any], ctx: Context) -> None:
    """Every billing event, whatever its type (a plain function: it runs off the event loop)."""
    assert ctx.event is not None
    with _ledger() as conn:
        conn.execute("INSERT INTO audit VALUES (?, ?)", (str(ctx.event.id), ctx.event.type))


# --- Stripe, and the seed's daily reconciliation ------------------------------------------------
# Stripe is optional here, so the example runs with the billing secret alone. With
# STRIPE_WEBHOOK_SECRET set, Stripe's events are accepted at POST /webhooks/stripe; with
# STRIPE_API_KEY too, every night the job below compares the events Stripe sent in the last
# RECONCILE_DAYS (its List Events API) with the stored ones and ingests those that never arrived.

RECONCILE_DAYS = 3
MAX_PAGES = 100  # 10,000 events a run; the rest waits for the next run


if config.environ().get("STRIPE_WEBHOOK_SECRET"):
    app.source("stripe", sources.stripe(secret_env="STRIPE_WEBHOOK_SECRET"))

    @app.on("stripe", "*")
    def stripe_audit(event: dict[str, Any], ctx: Context) -> None:
        """Every Stripe event, webhook or reconciled, once."""
        assert ctx.event is not None
        with _ledger() as conn:
            conn.execute("INSERT INTO audit VALUES (?, ?)", (str(ctx.event.id), ctx.event.type))


async def list_stripe_events(api_key: str, since: datetime) -> list[dict[str, Any]]:
    """Stripe's ``GET /v1/events`` created since ``since``, every page (newest first).

    ``STRIPE_API_BASE`` points it elsewhere (a test's fake Stripe).
    """
    base = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
    params: dict[str, Any] = {"limit": 100, "created[gte]": int(since.timestamp())}
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, auth=(api_key, "")) as client:
        for _ in range(MAX_PAGES):
            response = await client.get("/v1/events", params=params)
            if response.status_code in (401, 403):
                raise NonRetryable(f"Stripe refused STRIPE_API_KEY (HTTP {response.status_code})")
            response.raise_for_status()  # 429 and 5xx: the attempt fails and is retried
            page = response.json()
            found.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
    return found


async def ingest_missing(events: list[dict[str, Any]], now: datetime) -> int:
    """Store each event the way a webhook delivery of it is stored; returns how many were new.

    The events come from Stripe's API over TLS with our key, so there is no signature to check;
    everything else is the webhook's path (``ingress.build_event``: type, key, schemas, the
    handlers' executions) and ``store.ingest``'s ``ON CONFLICT DO NOTHING`` on the event id, so
    an event that did arrive is a duplicate and runs nothing again.
    """
    source = app.sources["stripe"]
    store = store_mod.connect(app.settings.database_url)
    new = 0
    try:
        for i in range(0, len(events), 100):
            batch: dict[str, Any] = {}
            for event in events[i : i + 100]:
                body = json.dumps(event, separators=(",", ":")).encode()
                built = ingress.build_event(
                    app, "stripe", source, sources.DictHeaders({}), body, now,
                    lambda key: key or uuid.uuid4().hex,
                )
                if not isinstance(built, dict):
                    batch.setdefault(built.idempotency_key, built)
            results = await store.ingest(list(batch.values()))
            new += sum(1 for r in results if r.outcome != "duplicate")
    finally:
        await store.close()
    return new


@app.cron("0 2 * * *", name="daily-reconciliation", timezone="UTC")
async def reconcile(ctx: Context) -> None:
    """The seed's nightly reconciliation: no Stripe event is lost to a missed webhook."""
    if "stripe" not in app.sources:
        ctx.log.info("reconcile.skipped", reason="STRIPE_WEBHOOK_SECRET is not set")
        return
    api_key = config.environ().get("STRIPE_API_KEY")
    if not api_key:
        raise NonRetryable("STRIPE_API_KEY is not set: cannot list Stripe's events")
    now = datetime.now(UTC)
    since = (ctx.scheduled_at or now) - timedelta(days=RECONCILE_DAYS)
    events = await list_stripe_events(api_key, since)
    ingested = await ingest_missing(events, now)
    ctx.log.info("reconciled", listed=len(events), ingested=ingested, since=since.isoformat())
