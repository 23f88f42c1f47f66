"""__SERVICE__: verified, deduplicated webhooks and idempotent handlers, with solo-os.

Run it on SQLite, no infrastructure:

    cp .env.example .env
    solo-os run app.py

Then, in another shell in this folder, send it a correctly signed test delivery (signed with
the secret in .env) and see it handled:

    solo-os send billing invoice.paid --data invoice.json
    solo-os executions list

`docker compose up --build` runs it on PostgreSQL, one container per role; terraform/ deploys
it to AWS. Handlers must be idempotent per event: solo-os runs each once per accepted event,
retries failures with backoff, and never repeats a finished `ctx.step`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, PositiveInt

from solo_os import App, Context, Retry, sources

app = App(service="__SERVICE__")  # configuration comes from the environment or .env


class InvoicePaid(BaseModel):
    """What your billing system sends with an ``invoice.paid`` webhook."""

    id: UUID
    customer_id: UUID
    amount_cents: PositiveInt
    currency: str = Field(min_length=3, max_length=3)
    paid_at: datetime
    metadata: dict[str, Any] | None = None


# The seed's generic scheme: HMAC-SHA256 of the body in x-signature, x-event-type,
# x-idempotency-key. Stripe deliveries are verified with Stripe's own scheme.
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))  # noqa: S106 - a name
app.source("stripe", sources.stripe(secret_env="STRIPE_WEBHOOK_SECRET"))  # noqa: S106


def send_receipt(invoice: InvoicePaid) -> dict[str, str]:
    """Stands in for your email provider's API call."""
    return {"id": f"rcpt_{uuid.uuid4().hex[:12]}", "to": str(invoice.customer_id)}


@app.on("billing", "invoice.paid", schema=InvoicePaid, retry=Retry(max_attempts=5))
async def fulfil(event: InvoicePaid, ctx: Context) -> None:
    # A durable step: its result is stored, so a retry of this handler does not send it twice.
    receipt = await ctx.step("send-receipt", send_receipt, event)
    ctx.log.info("fulfilled", invoice_id=str(event.id), receipt_id=receipt["id"])


@app.on("stripe", "checkout.session.completed")
async def checkout_completed(event: dict[str, Any], ctx: Context) -> None:
    """Stripe's event as it was sent; the Checkout Session is ``event["data"]["object"]``."""
    session = event["data"]["object"]
    ctx.log.info("checkout completed", session_id=session.get("id"))


@app.cron("0 2 * * *", name="daily-reconciliation", timezone="UTC")
async def reconcile(ctx: Context) -> None:
    """Once a night, exactly once across replicas; ``ctx.scheduled_at`` is the fire time."""
    ctx.log.info("reconciling", scheduled_at=str(ctx.scheduled_at))
