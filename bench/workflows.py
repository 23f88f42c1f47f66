"""Durable workflows under load, in one run (issue 17):

1. ingest rate with 100,000 executions waiting for events against none: two identical
   databases, one seeded with 100,000 waits on the very (source, type) being ingested (each
   for its own ``order`` value, none matching), taking turns round by round so the machine's
   load hits both alike. Events go through ``store.ingest`` in batches from concurrent
   writers, as the ingress's group commit sends them, each with one execution.
2. resume latency: a waiter's matching event sent → its code running again after
   ``wait_for_event``, against a fresh delivery sent → its handler starting, interleaved, with
   ``serve`` and ``worker`` in this process over one database (both timed the same way: from
   just before the HTTP request to the first line of code that runs); and how late a 200 ms
   ``ctx.sleep`` ends (``sleep``: the code after it runs that long after the sleep's end).

    .venv/bin/python bench/workflows.py [--db postgres|sqlite] [--waiters 100000] [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from bench import _common

from solo_os import App, Context, sources
from solo_os import store as store_mod
from solo_os.core import ids, records
from solo_os.core import workflow as wf
from solo_os.runtime import runtime as runtime_mod


def _events(n: int, prefix: str) -> list[records.NewEvent]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        text = json.dumps({"order": f"{prefix}-{i}", "amount": 4900})
        out.append(records.NewEvent(
            id=ids.uuid7(), source="billing", idempotency_key=f"{prefix}-{i}", type="payment",
            status="accepted", payload=text, body=text.encode(), headers={}, errors=None,
            correlation_id=f"{prefix}-{i}", received_at=now,
            executions=(records.NewExecution(ids.uuid7(), "audit", 3),),
        ))
    return out


def seed_waiters(db: _common.Database, n: int) -> None:
    """``n`` executions waiting for a ``billing``/``payment`` event with their own order."""
    now = datetime.now(UTC)
    far = now + timedelta(days=30)
    conn = db.connect()
    ph = "%s" if db.kind == "postgres" else "?"
    rows = []
    for i in range(n):
        xid = ids.uuid7()
        match = {"order": f"waiting-{i}"}
        rows.append((xid, match))
    ex_sql = (
        "INSERT INTO executions (id, handler, status, attempts, max_attempts, run_after, "
        f"correlation_id, created_at, updated_at) VALUES ({', '.join([ph] * 9)})"
    )
    # The match key as registration computes it: by the database on PostgreSQL (0008).
    key = "solo_os_wait_key(%s::jsonb, %s, false)" if db.kind == "postgres" else ph
    wc_sql = (
        "INSERT INTO workflow_calls (execution_id, name, kind, status, wake_at, source, type, "
        f"match, match_paths, match_key, created_at) VALUES ({', '.join([ph] * 9)}, {key}, {ph})"
    )

    def uid(x: Any) -> Any:
        return x if db.kind == "postgres" else x.hex

    def ts(t: datetime) -> Any:
        return t if db.kind == "postgres" else t.replace(tzinfo=None).isoformat(" ")

    cur = conn.cursor()
    for start in range(0, n, 5000):
        part = rows[start : start + 5000]
        if db.kind == "sqlite":
            cur.execute("BEGIN")
        cur.executemany(ex_sql, [
            (uid(x), "checkout", "waiting", 1, 4, ts(far), str(x), ts(now), ts(now)) for x, _ in part
        ])
        cur.executemany(wc_sql, [
            (uid(x), "payment", "wait", "waiting", ts(far), "billing", "payment", json.dumps(m),
             wf.paths_key(m), *_key(db.kind, m), ts(now)) for x, m in part
        ])
        if db.kind == "sqlite":
            cur.execute("COMMIT")
    cur.execute(
        f"INSERT INTO workflow_match_sets (source, type, match_paths) VALUES ({ph}, {ph}, {ph})",
        ("billing", "payment", "order"),
    )
    if db.kind == "postgres":
        cur.execute("ANALYZE")
    conn.close()


def _key(kind: str, match: dict[str, Any]) -> tuple[Any, ...]:
    """The parameters of the match key: the match and its paths (PostgreSQL), or the key."""
    if kind == "postgres":
        return (json.dumps(match), wf.paths_key(match))
    return (wf.match_key(match),)


def settle(db: _common.Database) -> None:
    """Both databases start a round alike: vacuumed, analyzed, checkpointed (PostgreSQL)."""
    if db.kind != "postgres":
        return
    conn = db.connect()
    conn.execute("VACUUM ANALYZE")
    conn.execute("CHECKPOINT")
    conn.close()


async def ingest_rate(url: str, events: list[records.NewEvent], batch: int, writers: int) -> float:
    store = store_mod.connect(url)
    try:
        queue = [events[i : i + batch] for i in range(0, len(events), batch)]
        t0 = time.perf_counter()

        async def writer() -> None:
            while queue:
                await store.ingest(queue.pop())

        await asyncio.gather(*(writer() for _ in range(writers)))
        return len(events) / (time.perf_counter() - t0)
    finally:
        await store.close()


async def part_ingest(kind: str, waiters: int, n_events: int, rounds: int) -> dict[str, Any]:
    writers = 4 if kind == "postgres" else 1
    with _common.fresh_database(kind, "wfnone") as none_db, \
            _common.fresh_database(kind, "wfwait") as wait_db:
        _common.db_upgrade(none_db)
        _common.db_upgrade(wait_db)
        _common.log(f"seeding {waiters:,} waiting executions ({kind})")
        seed_waiters(wait_db, waiters)
        settle(none_db)
        settle(wait_db)
        rates: dict[str, list[float]] = {"none": [], "waiters": []}
        loads = [_common.loadavg()[0]]
        for r in range(rounds):
            for label, db in (("none", none_db), ("waiters", wait_db)):
                rate = await ingest_rate(db.url, _events(n_events, f"{label}{r}"), 100, writers)
                rates[label].append(rate)
                _common.log(f"round {r + 1}: {label} {rate:,.0f} events/s")
        loads.append(_common.loadavg()[0])
        still = wait_db.scalar("SELECT count(*) FROM executions WHERE status = 'waiting'")
    none, waiting = statistics.median(rates["none"]), statistics.median(rates["waiters"])
    return {
        "db": kind, "waiters": waiters, "events_per_round": n_events, "rounds": rounds,
        "rates": rates, "median_none": none, "median_waiters": waiting,
        "ratio": waiting / none, "still_waiting": still, "load": loads,
    }


def latency_app() -> tuple[App, dict[str, list[float]]]:
    app = App(service="wf-bench")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))  # noqa: S106 - a name
    seen: dict[str, list[float]] = {"fresh": [], "resume": [], "sleep": []}

    @app.on("billing", "fresh")
    async def fresh(event: dict[str, Any], ctx: Context) -> None:
        seen["fresh"].append(time.time() - event["sent_at"])

    @app.on("billing", "start")
    async def waiter(event: dict[str, Any], ctx: Context) -> None:
        go = await ctx.wait_for_event("go", "billing", "go", match={"id": event["id"]}, timeout=600)
        if go is not None:
            seen["resume"].append(time.time() - go["sent_at"])

    @app.on("billing", "nap")
    async def nap(event: dict[str, Any], ctx: Context) -> None:
        # How late a 200 ms sleep ends: its end → the code after it running (lateness).
        before = await ctx.step("before", time.time)
        await ctx.sleep("nap", timedelta(milliseconds=200))
        seen["sleep"].append(time.time() - before - 0.2)

    return app, seen


async def part_latency(kind: str, n: int) -> dict[str, Any]:
    app, seen = latency_app()
    with _common.fresh_database(kind, "wflat") as db:
        _common.db_upgrade(db)
        app._settings = None
        import os

        os.environ.update(DATABASE_URL=db.url, BILLING_WEBHOOK_SECRET=_common.SECRET)
        rt = runtime_mod.Runtime(app, roles=("serve", "worker"), env=dict(os.environ))
        await rt.start()
        try:
            transport = httpx.ASGITransport(app=rt.asgi(lifespan=False))
            async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=30) as c:
                for i in range(n):
                    await _post(c, "start", {"id": i}, f"start-{i}")
                store = rt.store
                assert store is not None
                while (await store.counts()).get("waiting", 0) < n:  # noqa: ASYNC110 - a poll
                    await asyncio.sleep(0.2)
                for i in range(n):
                    await _post(c, "fresh", {"sent_at": time.time()}, f"fresh-{i}")
                    await asyncio.sleep(0.02)
                    await _post(c, "go", {"id": i, "sent_at": time.time()}, f"go-{i}")
                    await asyncio.sleep(0.02)
                for i in range(n):  # one at a time: each sleep's lateness alone
                    await _post(c, "nap", {}, f"nap-{i}")
                    await asyncio.sleep(0.05)
                deadline = time.monotonic() + 60
                while sum(len(xs) for xs in seen.values()) < 3 * n:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await rt.stop()
    out: dict[str, Any] = {"db": kind, "n": n}
    for label, xs in seen.items():
        xs = sorted(xs)
        out[label] = {
            "count": len(xs), "p50_ms": 1000 * xs[len(xs) // 2],
            "p99_ms": 1000 * xs[min(len(xs) - 1, int(len(xs) * 0.99))],
        }
    out["p99_ratio"] = out["resume"]["p99_ms"] / out["fresh"]["p99_ms"]
    return out


async def _post(c: httpx.AsyncClient, kind: str, payload: dict[str, Any], key: str) -> None:
    import hashlib
    import hmac

    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(_common.SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = await c.post("/webhooks/billing", content=body, headers={
        "content-type": "application/json", "x-signature": sig, "x-event-type": kind,
        "x-idempotency-key": key,
    })
    r.raise_for_status()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    p.add_argument("--waiters", type=int, default=100_000)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-n", type=int, default=300)
    a = p.parse_args()
    ingest = await part_ingest(a.db, a.waiters, a.events, a.rounds)
    print(json.dumps({k: v for k, v in ingest.items() if k != "rates"}, indent=1, default=str))
    latency = await part_latency(a.db, a.latency_n)
    print(json.dumps(latency, indent=1))
    _common.write_result(f"workflows_{a.db}", {"ingest": ingest, "latency": latency})


if __name__ == "__main__":
    asyncio.run(main())
