"""A literal Python port of the seed article's webhook receiver (FastAPI + SQLAlchemy).

The seed (Hono + Drizzle) does, per delivery, inside the request: check the idempotency key
with a SELECT (``findFirst``), INSERT an execution row as ``processing``, run the business
logic (``processPayment``), then UPDATE the row to ``completed`` (or ``failed``, with a 500).
That is kept as is, including its check-then-insert race: two concurrent deliveries of one
key can both pass the SELECT; the unique index then turns the second INSERT into a 500
(the kindest reading of the seed's "mark as processing to prevent race conditions").
Signature verification (HMAC-SHA256 of the raw body, ``x-signature``) is added so that it does
the same work per request as solo-os's ``sources.hmac``; validation is the seed's InvoicePaid
schema, keyed by the seed middleware's ``x-idempotency-key`` header.

    DATABASE_URL=postgresql://... BILLING_WEBHOOK_SECRET=... \\
        uvicorn --app-dir bench/baselines seed_port:app --port 8001
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, PositiveInt, ValidationError
from sqlalchemy.ext.asyncio import create_async_engine


class InvoicePaid(BaseModel):
    id: UUID
    customer_id: UUID
    amount_cents: PositiveInt
    currency: str = Field(min_length=3, max_length=3)
    paid_at: datetime
    metadata: dict[str, Any] | None = None


metadata = sa.MetaData()
executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("event_type", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if scheme.startswith("sqlite"):
        return f"sqlite+aiosqlite://{rest}"
    return f"postgresql+asyncpg://{rest}"


DATABASE_URL = os.environ["DATABASE_URL"]
SECRET = os.environ["BILLING_WEBHOOK_SECRET"].encode()
engine = create_async_engine(_url(DATABASE_URL), pool_size=10, max_overflow=10)
app = FastAPI()


async def create_schema() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def process_payment(event: InvoicePaid) -> None:
    """The seed's processPayment: the business logic, here nothing."""


@app.post("/webhooks/billing")
async def webhook(request: Request) -> JSONResponse:
    body = await request.body()
    given = request.headers.get("x-signature", "").removeprefix("sha256=")
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given, expected):
        return JSONResponse({"error": "invalid_signature"}, 401)
    key = request.headers.get("x-idempotency-key")
    if not key:
        return JSONResponse({"error": "missing_idempotency_key"}, 400)
    try:
        event = InvoicePaid.model_validate_json(body)
    except ValidationError:
        return JSONResponse({"error": "Invalid payload"}, 400)
    async with engine.connect() as conn:
        existing = (
            await conn.execute(sa.select(executions.c.id).where(executions.c.idempotency_key == key))
        ).first()
    if existing:
        return JSONResponse({"status": "already_processed"}, 200)
    async with engine.begin() as conn:
        await conn.execute(
            executions.insert().values(
                idempotency_key=key,
                event_type="invoice.paid",
                status="processing",
                payload=event.model_dump(mode="json"),
                created_at=datetime.now(UTC),
            )
        )
    try:
        await process_payment(event)
        async with engine.begin() as conn:
            await conn.execute(
                executions.update()
                .where(executions.c.idempotency_key == key)
                .values(status="completed")
            )
        return JSONResponse({"status": "ok"}, 200)
    except Exception as err:
        async with engine.begin() as conn:
            await conn.execute(
                executions.update()
                .where(executions.c.idempotency_key == key)
                .values(status="failed", error=str(err))
            )
        return JSONResponse({"error": "processing_failed"}, 500)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
