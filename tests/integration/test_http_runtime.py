"""``ctx.http`` inside the runtime, on SQLite and PostgreSQL: idempotency keys across retried
attempts, the sync face, shared buckets and pauses in the store, and rescheduling without
spending an attempt."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from solo_os import store as store_mod
from tests import helpers
from tests.apps.http_app import Target, make_app


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target().start()
    yield server
    server.stop()


async def settled(h: helpers.Harness, event_id: str) -> list[Any]:
    async def done() -> bool:
        xs = await h.store.list_executions(store_mod.Filters(limit=0))
        mine = [x for x in xs if str(x.event_id) == event_id]
        return bool(mine) and all(x.status in ("succeeded", "dead") for x in mine)

    await helpers.eventually(done, timeout=30)
    xs = await h.store.list_executions(store_mod.Filters(limit=0))
    return [x for x in xs if str(x.event_id) == event_id]


async def test_a_retried_attempt_sends_the_same_idempotency_key(
    database_url: str, target: Target
) -> None:
    async with helpers.running(make_app(target.url), database_url) as h:
        r = await h.post("billing", {"n": 1}, event_type="charge.flaky", key="flaky-1")
        (x,) = await settled(h, r.json()["event_id"])
        assert (x.status, x.attempts) == ("succeeded", 2)
        first, second = target.requests("/charge")
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        assert first.headers["x-correlation-id"] == second.headers["x-correlation-id"] != ""
        # a different execution charges under a different key
        r2 = await h.post("billing", {"n": 2}, event_type="charge.flaky", key="flaky-2")
        await settled(h, r2.json()["event_id"])
        third = target.requests("/charge")[2]
        assert third.headers["idempotency-key"] != first.headers["idempotency-key"]


async def test_keys_inside_and_outside_steps_repeat_on_the_next_attempt(
    database_url: str, target: Target
) -> None:
    async with helpers.running(make_app(target.url), database_url) as h:
        r = await h.post("billing", {}, event_type="charge.steps", key="steps-1")
        (x,) = await settled(h, r.json()["event_id"])
        assert (x.status, x.attempts) == ("succeeded", 2)
    seen = target.requests("/charge")
    # attempt 1: handler #1, step pay, handler #2; attempt 2: handler #1, handler #2 (the
    # step is stored, not run again)
    assert [s.body for s in seen] == [
        b'{"in":"handler","i":1}', b'{"in":"step"}', b'{"in":"handler","i":2}',
        b'{"in":"handler","i":1}', b'{"in":"handler","i":2}',
    ]
    keys = [s.headers["idempotency-key"] for s in seen]
    assert keys[0] == keys[3] and keys[2] == keys[4]
    assert len({keys[0], keys[1], keys[2]}) == 3


async def test_a_plain_handler_calls_through_the_sync_face(database_url: str, target: Target) -> None:
    async with helpers.running(make_app(target.url), database_url) as h:
        r = await h.post("billing", {"n": 7}, event_type="charge.sync", key="sync-1")
        (x,) = await settled(h, r.json()["event_id"])
        assert x.status == "succeeded"
    (seen,) = target.requests("/charge")
    assert seen.body == b'{"n":7}' and "idempotency-key" in seen.headers


async def test_no_token_in_time_reschedules_without_spending_an_attempt(
    database_url: str, target: Target
) -> None:
    # "tight" allows one call an hour; the handler has max_attempts=1, so a spent attempt
    # would make the second execution dead.
    app = make_app(target.url, max_wait=0.2)
    async with helpers.running(app, database_url) as h:
        r1 = await h.post("billing", {}, event_type="charge.throttled", key="t-1")
        (x1,) = await settled(h, r1.json()["event_id"])
        assert x1.status == "succeeded"
        r2 = await h.post("billing", {}, event_type="charge.throttled", key="t-2")
        event_id = r2.json()["event_id"]

        async def deferred() -> bool:
            xs = await h.store.list_executions(store_mod.Filters(limit=0))
            x = next(x for x in xs if str(x.event_id) == event_id)
            return x.status == "pending" and x.last_error is not None

        await helpers.eventually(deferred)
        xs = await h.store.list_executions(store_mod.Filters(limit=0))
        x2 = next(x for x in xs if str(x.event_id) == event_id)
        assert x2.attempts == 0, "the attempt was given back"
        assert "RateLimited" in (x2.last_error or "") and "tight" in (x2.last_error or "")
        assert x2.run_after - x2.updated_at > timedelta(minutes=50)  # when the next token is due
        assert await h.store.list_attempts(x2.id) == []
    assert len(target.requests("/charge")) == 1, "nothing was sent for the throttled one"


async def test_a_retry_after_pauses_the_key_in_the_store(database_url: str, target: Target) -> None:
    target.script("/charge", (429, {"Retry-After": "1"}))
    async with helpers.running(make_app(target.url), database_url) as h:
        r = await h.post("billing", {"n": 1}, event_type="charge", key="p-1")

        async def paused() -> bool:
            state = await h.store.rate_limit_state(target.hostport)
            return state is not None and state.paused_until is not None

        await helpers.eventually(paused, timeout=5, interval=0.02)
        (x,) = await settled(h, r.json()["event_id"])
        assert (x.status, x.attempts) == ("succeeded", 1)  # waited inside the call
    first, second = target.requests("/charge")
    assert second.at - first.at >= 0.95
