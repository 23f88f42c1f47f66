"""The seed's promise, tested in-process: a signed invoice.paid fulfils an order exactly once."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from solo_os.testing import Solo

INVOICE = json.loads((Path(__file__).resolve().parents[1] / "invoice.json").read_text())


def rows(ledger: Path, table: str) -> list[tuple[Any, ...]]:
    if not ledger.exists():
        return []
    with sqlite3.connect(ledger) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - a fixed name


def invoice(**changes: Any) -> dict[str, Any]:
    return {**INVOICE, "id": str(uuid.uuid4()), **changes}


async def test_an_invoice_is_fulfilled_once_however_often_it_is_delivered(solo: Solo, ledger: Path) -> None:
    data = invoice()
    key = {"x-idempotency-key": "evt_123"}
    first = await solo.client.billing("invoice.paid", data, headers=key)
    assert (first.status, first.executions) == ("accepted", 2)  # fulfil and audit
    for _ in range(3):  # the provider retries: the same delivery, signed again
        assert (await solo.client.post(first.delivery)).status == "duplicate"
    await solo.drain()
    [run] = await solo.assert_succeeded("fulfil", times=1)
    await solo.assert_succeeded("audit", times=1)
    assert [r[0] for r in rows(ledger, "fulfilments")] == [data["id"]]
    assert set(await solo.steps(run)) == {"send-receipt", "record-fulfilment"}
    solo.assert_logged("fulfilled", invoice_id=data["id"], times=1)


async def test_a_retry_does_not_send_the_receipt_twice(
    solo: Solo, module: ModuleType, ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    real_send, real_record = module.send_receipt, module.record_fulfilment
    failures = iter([RuntimeError("ledger locked")])

    def send_receipt(event: Any) -> dict[str, str]:
        sent.append(str(event.id))
        return real_send(event)

    def record_fulfilment(*args: Any) -> None:
        if (error := next(failures, None)) is not None:
            raise error
        real_record(*args)

    monkeypatch.setattr(module, "send_receipt", send_receipt)
    monkeypatch.setattr(module, "record_fulfilment", record_fulfilment)
    data = invoice()
    await solo.client.billing("invoice.paid", data)
    await solo.drain(skip_retries=True)  # jumps over the backoff instead of sleeping
    [run] = await solo.assert_succeeded("fulfil", times=1)
    assert run.attempts == 2
    assert sent == [data["id"]]  # the durable step ran once; the retry reused its result
    assert len(rows(ledger, "fulfilments")) == 1
    solo.assert_logged("execution.failed", handler="fulfil", error="ledger locked", times=1)


async def test_an_invalid_invoice_is_stored_as_rejected_and_runs_nothing(solo: Solo, ledger: Path) -> None:
    posted = await solo.client.billing("invoice.paid", invoice(amount_cents=0, currency="EURO"))
    assert (posted.status_code, posted.status) == (400, "invalid_payload")
    assert {tuple(d["loc"]) for d in posted.json()["details"]} == {("amount_cents",), ("currency",)}
    [event] = await solo.events(status="rejected")
    assert event.type == "invoice.paid"
    assert await solo.executions() == []
    assert rows(ledger, "fulfilments") == []


async def test_a_forged_delivery_is_refused_and_not_stored(solo: Solo) -> None:
    genuine = solo.client.build("billing", "invoice.paid", invoice(amount_cents=100))
    forged = dataclasses.replace(genuine, body=genuine.body.replace(b"100", b"999999"))
    posted = await solo.client.post(forged, sign=False)  # the original signature, a new body
    assert (posted.status_code, posted.status) == (401, "invalid_signature")
    assert await solo.events() == []


async def test_every_billing_event_is_audited_but_only_payments_fulfil(solo: Solo, ledger: Path) -> None:
    await solo.client.billing("invoice.voided", {"id": "in_1"})
    await solo.drain()
    await solo.assert_succeeded("audit", times=1)
    assert await solo.executions("fulfil") == []
    assert [r[1] for r in rows(ledger, "audit")] == ["invoice.voided"]
