"""The app's contract: signed deliveries are accepted once, handled once, bad ones refused."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from solo_os.testing import Solo


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


async def test_health_and_readiness(solo: Solo) -> None:
    assert (await solo.client.http.get("/healthz")).status_code == 200
    assert (await solo.client.http.get("/readyz")).json()["status"] == "ready"


async def test_a_paid_invoice_is_fulfilled_once(solo: Solo) -> None:
    data = invoice()
    first = await solo.client.send("billing", "invoice.paid", data)
    assert (first.status_code, first.status, first.executions) == (200, "accepted", 1)
    again = await solo.client.post(first.delivery)  # the provider redelivers
    assert again.status == "duplicate"

    await solo.drain()  # runs the worker until nothing is due
    [run] = await solo.assert_succeeded("fulfil", times=1)
    steps = await solo.steps(run)
    assert steps["send-receipt"]["to"] == data["customer_id"]
    solo.assert_logged("fulfilled", invoice_id=data["id"])


async def test_a_forged_delivery_is_refused_and_nothing_is_stored(solo: Solo) -> None:
    genuine = solo.client.build("billing", "invoice.paid", invoice())
    forged = dataclasses.replace(genuine, body=genuine.body.replace(b"4900", b"1"))
    refused = await solo.client.post(forged, sign=False)
    assert (refused.status_code, refused.status) == (401, "invalid_signature")
    assert await solo.events() == []


async def test_an_invalid_invoice_is_refused_with_details(solo: Solo) -> None:
    posted = await solo.client.send("billing", "invoice.paid", invoice(amount_cents=0))
    assert (posted.status_code, posted.status) == (400, "invalid_payload")
    assert [d["loc"] for d in posted.json()["details"]] == [["amount_cents"]]


async def test_stripe_checkout_completed(solo: Solo) -> None:
    session = {"id": "cs_test_123", "object": "checkout.session", "amount_total": 4900}
    posted = await solo.client.stripe("checkout.session.completed", session)
    assert (posted.status, posted.executions) == ("accepted", 1)
    await solo.drain()
    await solo.assert_succeeded("checkout_completed", times=1)
    solo.assert_logged("checkout completed", session_id="cs_test_123")


async def test_the_reconciliation_runs_once_a_night(solo: Solo) -> None:
    await solo.advance(days=2)  # two nights: each fire runs at its own time
    await solo.assert_succeeded("daily-reconciliation", times=2)
