"""Poison deliveries cannot stop the worker (issue 14), on SQLite and PostgreSQL.

A body nested deeper than ``solo_os.core.json_decoder.MAX_DEPTH`` is rejected at ingress; huge numbers,
NUL in strings and duplicate keys are accepted and read back the same on both databases; a
stored event that can no longer be read (a row from before the limit, a damaged row) makes
its own execution dead with the error, and every other delivery still runs, also after a
restart.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from solo_os import App, Context, Retry, sources
from solo_os import store as store_mod
from solo_os.store import _schema
from tests import helpers

DEEP = b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"


def poison_app(seen: dict[str, Any]) -> App:
    app = App(service="poison-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job", retry=Retry(max_attempts=3, base_delay=0.0))
    async def job(event: Any, ctx: Context) -> None:
        assert ctx.event is not None
        seen[ctx.event.idempotency_key] = event

    return app


async def _post(h: helpers.Harness, key: str, body: bytes) -> Any:
    _, headers = helpers.delivery(body, event_type="job", key=key)
    return await h.client.post("/webhooks/billing", content=body, headers=headers)


async def _executions(h: helpers.Harness) -> dict[str, tuple[str, str | None]]:
    """Idempotency key -> (execution status, last error)."""
    out = {}
    for e in await h.store.list_events(store_mod.Filters(limit=0)):
        for x in await h.store.list_executions(store_mod.Filters(limit=0), event_id=e.id):
            out[e.idempotency_key] = (x.status, x.last_error)
    return out


async def _all_settled(h: helpers.Harness) -> bool:
    return all(s in ("succeeded", "dead") for s, _ in (await _executions(h)).values())


async def test_poison_bodies_never_stop_the_worker(database_url: str) -> None:
    seen: dict[str, Any] = {}
    app = poison_app(seen)
    odd = {
        "huge": b'{"n": 123456789012345678901234567890, "m": 18446744073709551615}',
        "nul": b'{"s": "a\\u0000b", "t": ["\\u0000"]}',
        "dupes": b'{"k": 1, "k": 2, "k": {"x": 3}}',
    }
    async with helpers.running(app, database_url) as h:
        deep = await _post(h, "deep", DEEP)
        assert deep.status_code == 400, deep.text
        assert "nested deeper than 64" in deep.text
        for key, body in odd.items():
            r = await _post(h, key, body)
            assert r.status_code == 200, (key, r.text)
        for i in range(5):
            r = await _post(h, f"ok-{i}", json.dumps({"i": i}).encode())
            assert r.status_code == 200
        await helpers.eventually(lambda: _all_settled(h))
        done = await _executions(h)
        [rejected] = await h.store.list_events(store_mod.Filters(status="rejected", limit=0))
    assert rejected.idempotency_key == "deep"
    assert {k: s for k, (s, _) in done.items()} == {
        **{k: "succeeded" for k in odd},
        **{f"ok-{i}": "succeeded" for i in range(5)},
    }
    # A restart changes nothing: the same outcomes, and new work runs.
    async with helpers.running(app, database_url) as h:
        r = await _post(h, "after-restart", b'{"i": 99}')
        assert r.status_code == 200
        await helpers.eventually(lambda: _all_settled(h))
        assert await _executions(h) == {**done, "after-restart": ("succeeded", None)}
        assert len(await h.store.list_events(store_mod.Filters(status="rejected", limit=0))) == 1
    # Both databases hand the handler the same values.
    assert seen["huge"] == {"n": 1.2345678901234568e29, "m": 18446744073709551615}
    assert seen["nul"] == {"s": "a\x00b", "t": ["\x00"]}
    assert seen["dupes"] == {"k": {"x": 3}}
    assert [seen[f"ok-{i}"] for i in range(5)] == [{"i": i} for i in range(5)]


async def _damage(database_url: str, event_id: UUID, payload: str) -> None:
    """Write a payload that the ingress of today would refuse (as an older version stored it)."""
    s = store_mod.connect(database_url)
    try:
        async with s._write() as conn:
            await conn.execute(
                sa.update(_schema.events)
                .where(_schema.events.c.id == event_id)
                .values(payload=s._json_text("p")),
                {"p": payload},
            )
    finally:
        await s.close()


async def test_a_stored_event_that_cannot_be_read_fails_only_its_execution(
    database_url: str,
) -> None:
    seen: dict[str, Any] = {}
    app = poison_app(seen)
    deep = '{"a":' + "[" * 1000 + "]" * 1000 + "}"
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        ids = {}
        for key in ("bad", "a", "b", "c"):
            r = await _post(h, key, json.dumps({"key": key}).encode())
            assert r.status_code == 200
            ids[key] = UUID(r.json()["event_id"])
    await _damage(database_url, ids["bad"], deep)

    async with helpers.running(app, database_url) as h:
        await helpers.eventually(lambda: _all_settled(h))
        r = await _post(h, "after", b'{"key": "after"}')
        assert r.status_code == 200
        await helpers.eventually(lambda: _all_settled(h))
        first = await _executions(h)
        assert h.runtime.unready() is None  # the worker loop still runs
    status, error = first["bad"]
    assert status == "dead"
    assert error is not None and "cannot read the stored event" in error and "deeper than 64" in error
    assert {k: s for k, (s, _) in first.items() if k != "bad"} == dict.fromkeys(
        ("a", "b", "c", "after"), "succeeded"
    )
    assert "bad" not in seen and set(seen) == {"a", "b", "c", "after"}

    # A restart changes nothing: the dead one stays dead, new work runs.
    async with helpers.running(app, database_url) as h:
        r = await _post(h, "later", b'{"key": "later"}')
        assert r.status_code == 200
        await helpers.eventually(lambda: _all_settled(h))
        again = await _executions(h)
    assert again == {**first, "later": ("succeeded", None)}
