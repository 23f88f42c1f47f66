"""The seed's billing flow: a signed ``invoice.paid`` webhook fulfils an order exactly once.

Run it:  BILLING_WEBHOOK_SECRET=dev-secret solo-os run examples/billing/app.py
Send one: solo-os send billing invoice.paid --data examples/billing/invoice.json  (see README)

Each fulfilment is written to a small SQLite ledger (``FULFILMENTS_DB``, default
``./fulfilments.db``) so that tests can count effects: one row per fulfilled invoice.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, PositiveInt

from solo_os import App, Context, Retry, sources

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
