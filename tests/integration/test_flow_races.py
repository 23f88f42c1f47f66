"""Flow control under racing deliveries (SPEC 7, issue 16), on SQLite and PostgreSQL: bursts of
signed deliveries sent at once with httpx to two ``solo-os serve`` processes (their ingests
decide concurrently, under the per-key locks), run by two ``solo-os worker`` processes.

- RateLimit(5 per hour, key): of 80 deliveries of one key, exactly 5 run; 75 are ``skipped``
  with reason ``rate_limited``.
- Singleton(key) skip: of 20 deliveries per key for 3 keys, exactly one per key is stored to run
  (the others ``skipped``, reason ``singleton``) and no two runs of a key overlap.
- Debounce(1 s, key): 60 deliveries of one key run once, with the event of the one execution
  left; every other is ``skipped`` (``debounced``) pointing at its successor, a chain ending there.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from solo_os import store as store_mod
from tests.chaos import _support

APP = str(Path(__file__).resolve().parents[1] / "apps" / "flow_race_app.py")
RATE = 5


def _lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]


async def _burst(bases: list[str], event_type: str, payloads: list[dict[str, Any]]) -> None:
    """Every delivery at once (alternating between the two serve processes); each gets 200."""
    limits = httpx.Limits(max_connections=len(payloads), max_keepalive_connections=len(payloads))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        stamp = time.monotonic_ns()
        results = await asyncio.gather(*(
            _support.post(client, bases[n % 2], f"{event_type}-{n}-{stamp}", p, event_type=event_type)
            for n, p in enumerate(payloads)
        ))
    bad = [r.text for r in results if r.status_code != 200]
    assert not bad, bad


async def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def _executions(store: store_mod.Store, handler: str) -> list[Any]:
    return list(await store.list_executions(store_mod.Filters(handler=handler, limit=0)))


async def test_rate_limit_singleton_and_debounce_hold_under_racing_deliveries(
    database_url: str, tmp_path: Path
) -> None:
    log, gate = tmp_path / "flow.log", tmp_path / "gate"
    env = _support.env_for(database_url, FLOW_LOG=str(log), FLOW_GATE=str(gate),
                           SOLO_OS_POLL_INTERVAL="0.1", SOLO_OS_RETENTION_DAYS="0")
    store = store_mod.connect(database_url)
    with _support.processes(tmp_path) as procs:
        bases = [procs.serve(APP, env)[1], procs.serve(APP, env)[1]]
        procs.worker(APP, env)
        procs.worker(APP, env)
        try:
            await _rate_limit(bases, store, log)
            await _singleton(bases, store, log, gate)
            await _debounce(bases, store, log)
        finally:
            await store.close()


async def _rate_limit(bases: list[str], store: store_mod.Store, log: Path) -> None:
    await _burst(bases, "race.rate", [{"k": "acme", "i": i} for i in range(80)])
    xs = await _executions(store, "rate")
    assert len(xs) == 80
    skipped = [x for x in xs if x.status == "skipped"]
    assert len(skipped) == 80 - RATE and {x.reason for x in skipped} == {"rate_limited"}

    async def ran() -> bool:
        return sum(1 for x in await _executions(store, "rate") if x.status == "succeeded") == RATE

    await _until(ran)
    assert len([x for x in _lines(log) if x["h"] == "rate"]) == RATE


async def _singleton(bases: list[str], store: store_mod.Store, log: Path, gate: Path) -> None:
    keys = ["a", "b", "c"]
    await _burst(bases, "race.single", [{"k": k, "i": i} for i in range(20) for k in keys])

    async def all_started() -> bool:
        return len([x for x in _lines(log) if x["h"] == "single"]) >= 3

    await _until(all_started)  # each key's one execution runs, held by the gate
    xs = await _executions(store, "single")
    assert len(xs) == 60
    live = [x for x in xs if x.status != "skipped"]
    assert sorted(x.status for x in live) == ["running"] * 3  # exactly one per key
    assert {x.reason for x in xs if x.status == "skipped"} == {"singleton"}
    await asyncio.to_thread(gate.touch)

    async def done() -> bool:
        return sum(1 for x in await _executions(store, "single") if x.status == "succeeded") == 3

    await _until(done)
    runs = [x for x in _lines(log) if x["h"] == "single"]
    assert sorted(x["k"] for x in runs if x["at"] == "start") == keys  # one run per key, ever


async def _debounce(bases: list[str], store: store_mod.Store, log: Path) -> None:
    await _burst(bases, "race.debounce", [{"k": "crm", "i": i} for i in range(60)])

    async def ran() -> bool:
        return any(x["h"] == "debounced" for x in _lines(log))

    await _until(ran)
    await asyncio.sleep(1.5)  # a second run, if any, would be due by now
    runs = [x for x in _lines(log) if x["h"] == "debounced"]
    assert len(runs) == 1
    xs = {str(x.id): x for x in await _executions(store, "debounced")}
    assert len(xs) == 60
    [survivor] = [x for x in xs.values() if x.status != "skipped"]
    assert survivor.status == "succeeded" and str(survivor.id) == runs[0]["execution"]
    # Every superseded one names its successor; following them always ends at the survivor.
    for x in xs.values():
        seen = 0
        while x.status == "skipped":
            assert x.reason == "debounced"
            x = xs[(x.last_error or "").rsplit(" ", 1)[-1]]
            seen += 1
            assert seen < 60, "a cycle of superseding executions"
        assert x.id == survivor.id
