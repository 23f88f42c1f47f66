"""The app's contract: signed deliveries are accepted once, handled once, bad ones refused."""

from __future__ import annotations

import uuid
from typing import Any

from solo_os import store as store_mod

from .harness import Harness


def invoice(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "amount_cents": 4900,
        "currency": "EUR",
        "paid_at": "2026-11-23T10:00:00Z",
    }
    data.update(changes)
    return data


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).status_code == 200
    assert (await harness.client.get("/readyz")).json()["status"] == "ready"


async def test_a_paid_invoice_is_fulfilled_once(harness: Harness) -> None:
    data = invoice()
    body, headers = harness.delivery("billing", "invoice.paid", data)
    first = await harness.post("billing", body, headers)
    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    assert first.json()["executions"] == 1
    (execution,) = await harness.finished(first.json()["event_id"])
    assert (execution.handler, execution.status) == ("fulfil", "succeeded")
    steps = await harness.store.load_steps(execution.id)
    assert steps["send-receipt"]["to"] == data["customer_id"]

    again = await harness.post("billing", body, headers)  # the provider redelivers
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}


async def test_a_wrong_signature_is_refused_and_nothing_is_stored(harness: Harness) -> None:
    body, headers = harness.delivery("billing", "invoice.paid", invoice())
    headers["x-signature"] = "sha256=" + "0" * 64
    response = await harness.post("billing", body, headers)
    assert (response.status_code, response.json()) == (401, {"error": "invalid_signature"})
    assert await harness.store.list_events(store_mod.Filters(limit=0)) == []


async def test_an_invalid_invoice_is_refused_with_details(harness: Harness) -> None:
    body, headers = harness.delivery("billing", "invoice.paid", invoice(amount_cents=0))
    response = await harness.post("billing", body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"
    assert [d["loc"] for d in response.json()["details"]] == [["amount_cents"]]


async def test_stripe_checkout_completed(harness: Harness) -> None:
    session = {"id": "cs_test_123", "object": "checkout.session", "amount_total": 4900}
    body, headers = harness.delivery("stripe", "checkout.session.completed", session)
    response = await harness.post("stripe", body, headers)
    assert response.status_code == 200
    assert response.json()["executions"] == 1
    (execution,) = await harness.finished(response.json()["event_id"])
    assert (execution.handler, execution.status) == ("checkout_completed", "succeeded")
