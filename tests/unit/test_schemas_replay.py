"""Old stored events still run after a schema change: upcasters in the worker (real store).

Events are stored under version 1 of a schema; the app then moves to version 2 with an
upcaster. Pending executions and replays of dead ones both reach the new handler with the
upcast model; without the upcaster they would dead-letter.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, PositiveInt

from solo_os import App, Context, NonRetryable, Retry, sources
from solo_os import store as store_mod
from tests.helpers import eventually, running


class InvoiceV1(BaseModel):
    id: str
    amount_cents: PositiveInt


class Money(BaseModel):
    cents: PositiveInt
    currency: str


class InvoiceV2(BaseModel):
    id: str
    amount: Money
    schema_version: int


def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "amount": {"cents": doc["amount_cents"], "currency": "EUR"},
        "schema_version": 2,
    }


def app_v1(fail: bool) -> App:
    app = App(service="versions")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "invoice.paid", schema=InvoiceV1, retry=Retry(max_attempts=1))
    def fulfil(event: InvoiceV1, ctx: Context) -> None:
        if fail:
            raise NonRetryable("the v1 handler had a bug")

    return app


def app_v2(seen: list[InvoiceV2], upcast: bool = True) -> App:
    app = App(service="versions")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    extra: dict[str, Any] = {"upcast": {1: v1_to_v2}} if upcast else {}

    @app.on("billing", "invoice.paid", schema=InvoiceV2, retry=Retry(max_attempts=1), **extra)
    def fulfil(event: InvoiceV2, ctx: Context) -> None:
        seen.append(event)

    return app


async def _status(store: store_mod.Store, status: str) -> list[Any]:
    return await store.list_executions(store_mod.Filters(status=status, limit=0))


async def test_pending_and_replayed_v1_events_run_on_the_v2_handler(database_url: str) -> None:
    pending_id, dead_id = str(uuid.uuid4()), str(uuid.uuid4())
    # v1 deployed: one event dead-letters (a bug), then the ingress alone stores another.
    async with running(app_v1(fail=True), database_url) as h:
        r = await h.post("billing", {"id": dead_id, "amount_cents": 700})
        assert r.json()["status"] == "accepted"
        await eventually(lambda: _has(h.store, "dead", 1))
    async with running(app_v1(fail=False), database_url, roles=("serve",)) as h:
        r = await h.post("billing", {"id": pending_id, "amount_cents": 4900})
        assert r.json()["status"] == "accepted"

    # v2 deployed with an upcaster: the pending v1 event runs, then the dead one is replayed.
    seen: list[InvoiceV2] = []
    async with running(app_v2(seen), database_url) as h:
        await eventually(lambda: _has(h.store, "succeeded", 1))
        (dead,) = await _status(h.store, "dead")
        assert await h.store.replay([dead.id], {"fulfil": 1}, 1, store_mod.utcnow()) == [dead.id]
        await eventually(lambda: _has(h.store, "succeeded", 2))
    assert {(e.id, e.amount.cents, e.amount.currency, e.schema_version) for e in seen} == {
        (pending_id, 4900, "EUR", 2),
        (dead_id, 700, "EUR", 2),
    }


async def test_without_an_upcaster_old_events_dead_letter_with_a_clear_error(
    database_url: str,
) -> None:
    async with running(app_v1(fail=False), database_url, roles=("serve",)) as h:
        await h.post("billing", {"id": "inv-1", "amount_cents": 100})
    seen: list[InvoiceV2] = []
    async with running(app_v2(seen, upcast=False), database_url) as h:
        await eventually(lambda: _has(h.store, "dead", 1))
        (dead,) = await _status(h.store, "dead")
    assert seen == []
    assert dead.last_error is not None and "no longer matches InvoiceV2" in dead.last_error


async def _has(store: store_mod.Store, status: str, n: int) -> bool:
    return len(await _status(store, status)) == n
