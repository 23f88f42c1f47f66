"""A lost flow-controlled execution runs alone (SPEC section 7, issue 16), on SQLite and
PostgreSQL, with real processes: a Concurrency(2) handler whose poison event ``kill -9``s its
own worker process on every attempt, two ``solo-os worker`` processes (restarted when they
die, as a supervisor would), and 20 neighbours of the same handler and key.

The poison's first attempt runs before the neighbours are sent; from then on it runs alone
(``execution.isolated``), no neighbour is ever lost with it, the limit of 2 is never exceeded
(the poison counts while the store holds it running), every neighbour succeeds and the poison
is dead after ``SOLO_OS_MAX_LOSSES`` (3) losses.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from solo_os import store as store_mod
from tests.chaos import _support
from tests.integration import test_flow_processes as fp

H = "two_with_a_poison"


async def _outcomes(store: store_mod.Store) -> dict[str, tuple[str, list[str]]]:
    """Execution id -> (status, attempt outcomes) of the handler's executions."""
    out = {}
    for x in await store.list_executions(store_mod.Filters(handler=H, limit=0)):
        attempts = await store.list_attempts(x.id)
        out[str(x.id)] = (x.status, [a.outcome for a in attempts])
    return out


async def test_a_lost_flow_controlled_execution_runs_alone(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "flow.log"
    env = {**fp._env(database_url, log, SOLO_OS_MAX_LOSSES="3"), "SOLO_OS_LEASE_SECONDS": "1"}
    store = store_mod.connect(database_url)
    restarts = 0
    try:
        with _support.processes(tmp_path) as procs:
            _, base = procs.serve(fp.APP, env)
            workers = [procs.worker(fp.APP, env), procs.worker(fp.APP, env)]
            await fp._send(base, [("lost", {"i": -1, "poison": True})])
            await fp._wait(log, lambda ls: fp._count(ls, H, "start") >= 1)
            await fp._send(base, [("lost", {"i": i}) for i in range(20)])
            deadline = time.monotonic() + 40
            state: dict[str, tuple[str, list[str]]] = {}
            while time.monotonic() < deadline:
                for n, w in enumerate(workers):
                    if w.poll() is not None:  # the supervisor: restart what dies
                        restarts += 1
                        workers[n] = procs.worker(fp.APP, env)
                state = await _outcomes(store)
                if len(state) == 21 and all(s in ("succeeded", "dead") for s, _ in state.values()):
                    break
                await asyncio.sleep(0.2)
            lines = fp._lines(log)
            logs = procs.logs()
    finally:
        await store.close()
    starts = [x for x in lines if x["h"] == H and x["at"] == "start"]
    poison = {x["x"] for x in starts if x["i"] == -1}
    assert len(poison) == 1, logs
    [pid] = poison
    assert state.pop(pid) == ("dead", ["lost"] * 3), (state, logs)
    assert restarts == 3, logs  # the poison took its process down three times, nothing else
    assert len(state) == 20 and all(v == ("succeeded", ["succeeded"]) for v in state.values()), (
        state, logs,
    )
    isolated = [ln for ln in logs.splitlines() if "execution.isolated" in ln and pid in ln]
    assert len(isolated) >= 2, logs  # its second and third attempts (logs keep each tail)
    ended = {x["x"] for x in lines if x["h"] == H and x["at"] == "end"}
    assert all(x["x"] in ended for x in starts if x["i"] != -1), "no neighbour was cut off"
    _assert_limit(lines)


def _assert_limit(lines: list[dict[str, Any]]) -> None:
    """At most 2 at once; in the 0.5 s after each poison start line (its lease of 1 s has not
    run out: the store counts it running) at most one neighbour beside it. Logged spans lie
    within the store's."""
    spans = list(fp._spans(lines, H, by="x").values())
    assert len(spans) == 20
    assert fp._max_overlap(spans) <= 2
    for p in (x["t"] for x in lines if x["h"] == H and x["i"] == -1):
        inside = [(max(s, p), min(e, p + 0.5)) for s, e in spans if s < p + 0.5 and e > p]
        assert fp._max_overlap(inside) <= 1, "a neighbour beside the poison"
