"""Apps for the tests: the billing flow with in-memory effect counters."""

from __future__ import annotations

import collections
import threading
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, PositiveInt

from solo_os import App, Context, Retry, sources


class InvoicePaid(BaseModel):
    id: UUID
    customer_id: UUID
    amount_cents: PositiveInt
    currency: str = Field(min_length=3, max_length=3)
    paid_at: datetime
    metadata: dict[str, Any] | None = None


class LenientInvoice(BaseModel):
    """The schema after a fix: amount may be zero, currency any length."""

    id: UUID
    amount_cents: int
    currency: str


class Effects:
    """Thread-safe counters of what handlers did, per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.seen: list[dict[str, Any]] = []

    def add(self, key: str, **info: Any) -> None:
        with self._lock:
            self.calls[key] += 1
            self.seen.append({"key": key, **info})


def make_app(
    effects: Effects,
    *,
    schema: type[BaseModel] = InvoicePaid,
    max_attempts: int = 3,
) -> App:
    app = App(service="billing-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", schema=schema, retry=Retry(max_attempts=max_attempts))
    async def fulfil(event: Any, ctx: Context) -> None:
        effects.add(f"fulfil:{event.id}", attempt=ctx.attempt, correlation_id=ctx.correlation_id)

    @app.on("billing", "*")
    def audit(event: dict[str, Any], ctx: Context) -> None:
        assert ctx.event is not None
        effects.add(
            f"audit:{ctx.event.id}",
            thread=threading.current_thread().name,
            type=ctx.event.type,
        )

    return app
