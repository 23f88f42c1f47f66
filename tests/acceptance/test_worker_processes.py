"""Real ``solo-os worker`` / ``run`` processes against handlers that try to take them down
(issue 14), on SQLite and PostgreSQL.

- 20 healthy executions beside a handler that calls ``os._exit(1)`` (a supervisor restarts the
  process, as systemd or Docker would), one that raises ``SystemExit`` from a plain ``def``
  and one that raises ``KeyboardInterrupt``: all 20 succeed, ``SystemExit`` and
  ``KeyboardInterrupt`` never end the process, the poison kills it exactly
  ``SOLO_OS_MAX_LOSSES`` times (2 here) and is dead, named as lost.
- SIGTERM (``worker``) or SIGINT (``run``) while plain ``def`` handlers hang and spin: the
  process ends within ``SOLO_OS_SHUTDOWN_GRACE``, with status 0, and the attempts are recorded
  as interrupted.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from solo_os import store as store_mod
from tests.chaos import _support

APP = str(Path(__file__).resolve().parents[1] / "apps" / "crash_app.py")
GRACE = 2.0


def _env(database_url: str) -> dict[str, str]:
    return _support.env_for(
        database_url,
        SOLO_OS_LEASE_SECONDS="1",
        SOLO_OS_POLL_INTERVAL="0.1",
        SOLO_OS_MAX_LOSSES="3",
        SOLO_OS_SHUTDOWN_GRACE=str(GRACE),
        SOLO_OS_RETENTION_DAYS="0",
    )


async def _deliver(base: str, kinds: dict[str, str]) -> dict[str, UUID]:
    """Key -> event id, one delivery per key of the given kind (event type)."""
    out = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for key, kind in kinds.items():
            r = await _support.post(client, base, key, {"key": key}, event_type=kind)
            assert r.status_code == 200, r.text
            out[key] = UUID(r.json()["event_id"])
    return out


async def _state(
    store: store_mod.Store, events: dict[str, UUID]
) -> dict[str, tuple[str, list[str], str | None]]:
    """Key -> (status, attempt outcomes, last error) of its one execution."""
    out = {}
    for key, event_id in events.items():
        [x] = await store.list_executions(store_mod.Filters(limit=0), event_id=event_id)
        outcomes = [a.outcome for a in await store.list_attempts(x.id)]
        out[key] = (x.status, outcomes, x.last_error)
    return out


async def test_a_poison_that_kills_its_worker_is_dead_and_takes_no_neighbour_with_it(
    database_url: str, tmp_path: Path
) -> None:
    env = _env(database_url)
    kinds = {f"ok-{i}": "healthy" for i in range(20)}
    kinds.update({"exit": "exit_def", "interrupt": "interrupt", "poison": "poison"})  # poison last
    env["SOLO_OS_MAX_LOSSES"] = "2"
    store = store_mod.connect(database_url)
    exits: list[int] = []
    port = _support.free_port()
    run = [_support.SOLO_OS, "run", APP, "--port", str(port)]
    with _support.processes(tmp_path) as procs:
        # One process for ingress and worker: the deliveries are in before the poison runs
        # (the worker starts with the process, so it may already be claiming them).
        worker = procs.start(run, env, "run")
        _support.wait_ready(f"http://127.0.0.1:{port}", worker)
        events = await _deliver(f"http://127.0.0.1:{port}", kinds)
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                rc = worker.poll()
                if rc is not None:  # the supervisor: restart what exits
                    exits.append(rc)
                    worker = procs.start(run, env, "run")
                state = await _state(store, events)
                if all(s in ("succeeded", "dead") for s, _, _ in state.values()):
                    break
                await asyncio.sleep(0.2)
            state = await _state(store, events)
            alive = worker.poll() is None
        finally:
            await store.close()
        logs = procs.logs()
    assert alive, logs
    assert exits == [1, 1], (exits, logs)  # only the poison ended the process, twice
    for i in range(20):
        status, outcomes, _ = state[f"ok-{i}"]
        assert status == "succeeded", (i, state[f"ok-{i}"], logs)
        assert outcomes[-1] == "succeeded" and set(outcomes) <= {"lost", "succeeded"}
        assert outcomes.count("lost") <= 1  # lost with the poison at most once, then ran alone
    status, outcomes, error = state["poison"]
    assert (status, outcomes) == ("dead", ["lost"] * 2)
    assert error is not None and "lost 2 times" in error
    for key, name in (("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")):
        status, outcomes, error = state[key]
        # Two failed attempts spend the budget of two; one lost beside the poison spends none.
        assert status == "dead" and [o for o in outcomes if o != "lost"] == ["failed", "failed"]
        assert outcomes.count("lost") <= 1 and (error or "").startswith(name), state[key]


@pytest.mark.parametrize(("role", "sig"), [("worker", signal.SIGTERM), ("run", signal.SIGINT)])
async def test_a_stop_signal_ends_the_process_within_the_grace_whatever_its_threads_do(
    database_url: str, tmp_path: Path, role: str, sig: signal.Signals
) -> None:
    env = _env(database_url)
    store = store_mod.connect(database_url)
    with _support.processes(tmp_path) as procs:
        if role == "worker":
            _, base = procs.serve(APP, env)
            proc = procs.worker(APP, env)
        else:
            port = _support.free_port()
            proc = procs.start([_support.SOLO_OS, "run", APP, "--port", str(port)], env, "run")
            base = f"http://127.0.0.1:{port}"
            _support.wait_ready(base, proc)
        events = await _deliver(base, {"spin": "spin", "hang": "hang"})
        try:
            for _ in range(200):
                state = await _state(store, events)
                if all(s == "running" for s, _, _ in state.values()):
                    break
                await asyncio.sleep(0.1)
            assert all(s == "running" for s, _, _ in state.values()), (state, procs.logs())
            await asyncio.sleep(0.3)  # the spinning thread is well under way
            sent = time.monotonic()
            proc.send_signal(sig)
            while proc.poll() is None and time.monotonic() - sent < 30:
                await asyncio.sleep(0.02)
            took = time.monotonic() - sent
            state = await _state(store, events)
        finally:
            await store.close()
        logs = procs.logs()
    assert took <= GRACE + 0.3, (took, logs)
    assert proc.returncode == 0, logs
    # What ran is given back, its attempt recorded as interrupted (spending no budget).
    assert all(s == "pending" and o == ["interrupted"] for s, o, _ in state.values()), state
