"""Debounce holds across a crash (SPEC section 7, issue 16): a burst of events for one key, then
``kill -9`` of the ``solo-os run`` process before the debounce period ends; a new process on
the same database runs the handler once, with the last event. Nothing of the decision lives
in the process: the superseded executions are ``skipped`` at ingest and the survivor waits in
the store. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.chaos import _support
from tests.integration.test_flow_processes import APP, _env, _lines, _send, _wait


def _run(procs: _support.Procs, env: dict[str, str]) -> str:
    port = _support.free_port()
    proc = procs.start([_support.SOLO_OS, "run", APP, "--port", str(port)], env, "run")
    base = f"http://127.0.0.1:{port}"
    _support.wait_ready(base, proc)
    return base


async def test_debounce_runs_once_with_the_last_event_after_kill_9(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "flow.log"
    env = _env(database_url, log)
    with _support.processes(tmp_path) as procs:
        base = _run(procs, env)
        await _send(base, [("debounce", {"k": "a", "i": i}) for i in range(5)])
        victim = procs.all[-1]
        os.kill(victim.pid, signal.SIGKILL)  # well inside the 2 s debounce period
        victim.wait()
        assert not [x for x in _lines(log) if x["h"] == "debounced"], "ran before the period ended"
        _run(procs, env)
        await _wait(log, lambda ls: any(x["h"] == "debounced" for x in ls), timeout=30)
        await asyncio.sleep(2.5)  # longer than the period: a second run would show by now
        lines = _lines(log)
        logs = procs.logs()
    runs = [(x["k"], x["i"]) for x in lines if x["h"] == "debounced"]
    assert runs == [("a", 4)], f"{runs}\n{logs}"
