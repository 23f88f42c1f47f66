"""The HTTP contract of SPEC section 3, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from solo_os import store as store_mod
from tests import helpers
from tests.apps.billing import Effects, LenientInvoice, make_app


async def _all_done(h: helpers.Harness, n: int) -> bool:
    rows = await h.store.list_executions(store_mod.Filters(limit=0))
    return len(rows) >= n and all(r.status == "succeeded" for r in rows)


async def test_accepted_delivery_runs_every_matching_handler_once(database_url: str) -> None:
    effects = Effects()
    async with helpers.running(make_app(effects), database_url) as h:
        inv = helpers.invoice()
        r = await h.post("billing", inv, key="evt-1")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "accepted"
        assert body["executions"] == 2  # fulfil + the "*" audit handler (fan-out)
        await helpers.eventually(lambda: _all_done(h, 2))
        event_id = body["event_id"]
        assert effects.calls[f"fulfil:{inv['id']}"] == 1
        assert effects.calls[f"audit:{event_id}"] == 1
        # plain def handlers run off the event loop's thread
        audit = next(s for s in effects.seen if s["key"].startswith("audit:"))
        assert audit["thread"] != threading.main_thread().name
        stored = await h.store.get_event(__import__("uuid").UUID(event_id))
        assert stored is not None
        event, raw = stored
        assert event.status == "accepted" and event.idempotency_key == "evt-1"
        assert raw == helpers.delivery(inv, key="evt-1")[0]
        assert "x-signature" not in (event.headers or {})  # signatures are never stored


async def test_200_concurrent_deliveries_of_one_key_store_one_event(database_url: str) -> None:
    effects = Effects()
    async with helpers.running(make_app(effects), database_url) as h:
        inv = helpers.invoice()
        responses = await asyncio.gather(
            *(h.post("billing", inv, key="same-key") for _ in range(200))
        )
        assert {r.status_code for r in responses} == {200}
        statuses = [r.json()["status"] for r in responses]
        assert statuses.count("accepted") == 1
        assert statuses.count("duplicate") == 199
        assert len({r.json()["event_id"] for r in responses}) == 1
        await helpers.eventually(lambda: _all_done(h, 2))
        await asyncio.sleep(0.3)  # anything extra would have run by now
        events = await h.store.list_events(store_mod.Filters(limit=0))
        executions = await h.store.list_executions(store_mod.Filters(limit=0))
        assert len(events) == 1
        assert sorted(x.handler for x in executions) == ["audit", "fulfil"]
        assert effects.calls[f"fulfil:{inv['id']}"] == 1
        assert sum(effects.calls.values()) == 2


async def test_delivery_without_key_is_keyed_by_its_body(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        inv = helpers.invoice()
        first = await h.post("billing", inv)
        second = await h.post("billing", inv)
        assert first.json()["status"] == "accepted"
        assert second.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}


async def test_schema_failure_is_stored_rejected_then_accepted_after_the_fix(
    database_url: str,
) -> None:
    inv = helpers.invoice(amount_cents=0, currency="EURO")
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        r = await h.post("billing", inv, key="bad-1")
        assert r.status_code == 400
        body = r.json()
        assert body["error"] == "invalid_payload"
        locs = {tuple(d["loc"]) for d in body["details"]}
        assert ("amount_cents",) in locs and ("currency",) in locs
        assert all("input" not in d for d in body["details"])
        events = await h.store.list_events(store_mod.Filters(status="rejected"))
        assert len(events) == 1
        found = await h.store.get_event(events[0].id)
        assert found is not None and found[0].errors
        # the same delivery again, schema unchanged: still 400, still one row
        again = await h.post("billing", inv, key="bad-1")
        assert again.status_code == 400
        assert len(await h.store.list_events(store_mod.Filters(limit=0))) == 1
    effects = Effects()
    fixed = make_app(effects, schema=LenientInvoice)
    async with helpers.running(fixed, database_url) as h:
        r = await h.post("billing", inv, key="bad-1")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        assert r.json()["event_id"] == str(events[0].id)
        await helpers.eventually(lambda: _all_done(h, 2))
        assert effects.calls[f"fulfil:{inv['id']}"] == 1
        stored = await h.store.list_events(store_mod.Filters(limit=0))
        assert [(e.id, e.status) for e in stored] == [(events[0].id, "accepted")]
        # and now it is a plain duplicate
        dup = await h.post("billing", inv, key="bad-1")
        assert dup.json()["status"] == "duplicate"


async def test_not_json_is_rejected_and_kept(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        r = await h.post("billing", b"{not json", key="nj")
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_payload"
        events = await h.store.list_events(store_mod.Filters(limit=0))
        assert [e.status for e in events] == ["rejected"]
        found = await h.store.get_event(events[0].id)
        assert found is not None and found[1] == b"{not json"
        assert events[0].idempotency_key == "nj"  # the header's key, even without a JSON body


async def test_missing_event_type_is_rejected(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        r = await h.post("billing", helpers.invoice(), event_type=None, key="nt")
        assert r.status_code == 400
        assert r.json()["details"][0]["loc"] == ["type"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b, h: h.pop("x-signature"), id="missing"),
        pytest.param(lambda b, h: h.update({"x-signature": "sha256=" + "0" * 64}), id="wrong"),
        pytest.param(lambda b, h: h.update({"x-signature": "sha256=zz"}), id="not-hex"),
        pytest.param(
            lambda b, h: h.update({"x-signature": helpers.sign(b, "other-secret")}), id="other-secret"
        ),
    ],
)
async def test_bad_signature_is_401_and_stores_nothing(database_url: str, mutate: Any) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        body, headers = helpers.delivery(helpers.invoice(), key="sig")
        mutate(body, headers)
        r = await h.client.post("/webhooks/billing", content=body, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_signature"}
        assert await h.store.list_events(store_mod.Filters(limit=0)) == []


async def test_unknown_source_is_404(database_url: str) -> None:
    async with helpers.running(make_app(Effects()), database_url, roles=("serve",)) as h:
        body, headers = helpers.delivery(helpers.invoice())
        r = await h.client.post("/webhooks/nope", content=body, headers=headers)
        assert r.status_code == 404
        assert r.json() == {"error": "unknown_source"}


async def test_body_over_the_limit_is_413_and_stores_nothing(database_url: str) -> None:
    async with helpers.running(
        make_app(Effects()), database_url, roles=("serve",), settings={"SOLO_OS_MAX_BODY_BYTES": 1000}
    ) as h:
        big = helpers.invoice(metadata={"pad": "x" * 2000})
        r = await h.post("billing", big, key="big")
        assert r.status_code == 413
        assert r.json() == {"error": "payload_too_large"}

        async def chunks() -> Any:  # no Content-Length: the limit applies while streaming
            for _ in range(10):
                yield b"x" * 500

        _, headers = helpers.delivery(helpers.invoice())
        r = await h.client.post("/webhooks/billing", content=chunks(), headers=headers)
        assert r.status_code == 413
        assert await h.store.list_events(store_mod.Filters(limit=0)) == []


async def test_event_type_without_handler_is_stored_with_no_executions(database_url: str) -> None:
    app = make_app(Effects())
    app._handlers.pop("audit")  # leave only the invoice.paid handler
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        r = await h.post("billing", {"anything": True}, event_type="customer.created", key="c1")
        assert r.status_code == 200
        assert r.json()["status"] == "accepted" and r.json()["executions"] == 0
        events = await h.store.list_events(store_mod.Filters(limit=0))
        assert [(e.type, e.status) for e in events] == [("customer.created", "accepted")]


async def test_payload_postgres_jsonb_cannot_hold_is_still_accepted(database_url: str) -> None:
    """Pins a bug class: jsonb refuses \\u0000, which Python's JSON parser accepts."""
    effects = Effects()
    async with helpers.running(make_app(effects), database_url) as h:
        inv = helpers.invoice(metadata={"note": "nul\u0000byte"})
        r = await h.post("billing", inv, key="nul")
        assert r.status_code == 200, r.text
        await helpers.eventually(lambda: _all_done(h, 2))
        assert effects.calls[f"fulfil:{inv['id']}"] == 1


async def test_correlation_id_comes_from_header_or_traceparent(database_url: str) -> None:
    effects = Effects()
    async with helpers.running(make_app(effects), database_url) as h:
        body, headers = helpers.delivery(helpers.invoice(), key="k-corr")
        headers["x-correlation-id"] = "req-abc-123"
        await h.client.post("/webhooks/billing", content=body, headers=headers)
        body2, headers2 = helpers.delivery(helpers.invoice(), key="k-trace")
        headers2["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await h.client.post("/webhooks/billing", content=body2, headers=headers2)
        await helpers.eventually(lambda: _all_done(h, 4))
        events = {e.idempotency_key: e for e in await h.store.list_events(store_mod.Filters())}
        assert events["k-corr"].correlation_id == "req-abc-123"
        assert events["k-trace"].correlation_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        seen = {s["correlation_id"] for s in effects.seen if "correlation_id" in s}
        assert seen == {"req-abc-123", "4bf92f3577b34da6a3ce929d0e0e4736"}
