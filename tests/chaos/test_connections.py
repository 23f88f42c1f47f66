"""PostgreSQL refusing connections: at start a process waits for it (a clear line per attempt,
``/readyz`` 503 meanwhile) and gives up with exit status 4 after ``SOLO_OS_DB_CONNECT_TIMEOUT``;
at run time a process out of new connections keeps serving with those it has.

The full-server cases run on a private cluster (``_private.py``) with a tiny
``max_connections``, filled by the test's own connections; the down-server case points at a
port where nothing listens. The ``DATABASE_URL`` carries a password (trust ignores it) that
must appear in no output.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from solo_os.runtime import connecting
from tests.chaos import _private, _support

APP = str(_support.APPS / "counted.py")
PASSWORD = "pw-never-printed-7f3a"


def _with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")


async def _fill(url: str) -> list[asyncpg.Connection]:
    """Open connections until the server refuses one; they hold every slot."""
    held: list[asyncpg.Connection] = []
    while True:
        try:
            held.append(await asyncpg.connect(url, timeout=5))
        except asyncpg.TooManyConnectionsError:
            return held


async def _wait_for(path: Path, text: str, count: int = 1, timeout: float = 30.0) -> float:
    """Wait until ``text`` appears ``count`` times in the log at ``path``; when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _tail(path, None).count(text) >= count:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in {path.name} within {timeout}s:\n{_tail(path)}")


def _tail(path: Path, size: int | None = 3000) -> str:
    """The end of the log at ``path`` (all of it with ``size=None``)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-size:] if size else text


@pytest.mark.timeout(60)
async def test_serve_without_a_database_answers_503_then_exits_4_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://solo:{PASSWORD}@127.0.0.1:{_support.free_port()}/shop"
    port = _support.free_port()
    env = _support.env_for(url, SOLO_OS_DB_CONNECT_TIMEOUT="8", COUNT_FILE=str(tmp_path / "n"))
    proc = subprocess.Popen(  # noqa: ASYNC220 - the process under test, polled below
        [_support.SOLO_OS, "serve", APP, "--port", str(port)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = health = None
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    ready, health = await client.get(f"{base}/readyz"), await client.get(f"{base}/healthz")
                    hook = await _support.post(client, base, "k1")
                    break
                await asyncio.sleep(0.05)
        assert ready is not None and health is not None, "the port never answered while waiting"
        assert (ready.status_code, health.status_code) == (503, 200)
        assert hook.status_code == 503 and hook.headers.get("retry-after")
        out, err = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cannot connect to PostgreSQL at 127.0.0.1:"), err
    assert "connection refused" in lines[0] and "within 8 s" in lines[0]
    attempts = out.decode().count("store.connect_failed")
    assert attempts >= 3, out  # 0.5, 1, 2 s apart: one line per attempt
    assert PASSWORD not in (out + err).decode()


@pytest.mark.timeout(60)
async def test_a_waiting_worker_says_unready_on_its_metrics_port_then_exits_4(tmp_path: Path) -> None:
    url = f"postgresql://solo:{PASSWORD}@127.0.0.1:{_support.free_port()}/shop"
    port = _support.free_port()
    env = _support.env_for(url, SOLO_OS_DB_CONNECT_TIMEOUT="6", SOLO_OS_METRICS_PORT=str(port),
                           COUNT_FILE=str(tmp_path / "n"))
    proc = await asyncio.create_subprocess_exec(
        _support.SOLO_OS, "worker", APP, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    ready = None
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 15
            while ready is None and time.monotonic() < deadline and proc.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                await asyncio.sleep(0.05)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert ready is not None and ready.status_code == 503, ready
    assert ready.json() == {"status": "unavailable", "worker": "starting"}
    assert proc.returncode == 4, err
    assert err.decode().startswith("cannot connect to PostgreSQL") and PASSWORD not in (out + err).decode()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_worker_waits_for_a_free_slot_and_one_that_never_gets_one_exits_4(tmp_path: Path) -> None:
    with _private.cluster(max_connections=5) as c, _support.processes(tmp_path) as procs:
        url = _with_password(await _private.database(c, "crowded"))
        held = await _fill(url)
        assert len(held) == 5
        counts = tmp_path / "counts"
        env = {**_support.env_for(url, COUNT_FILE=str(counts)), "LOG_LEVEL": "info"}
        worker = procs.start([_support.SOLO_OS, "worker", APP], env, "worker")
        log = tmp_path / "worker-0.log"
        await _wait_for(log, '"reason":"too many clients already', count=3)
        assert worker.poll() is None
        for conn in held[:3]:  # the worker's admin pool, hot pool and listener
            await conn.close()
        freed = time.monotonic()
        started = await _wait_for(log, '"event":"runtime.started"')
        assert started - freed < connecting.MAX_DELAY + 3, _tail(log)
        assert '"event":"store.connected"' in log.read_text()

        # The server is full again: a second worker gives up after its timeout, status 4.
        give_up = await asyncio.to_thread(
            subprocess.run, [_support.SOLO_OS, "worker", APP],
            env={**env, "SOLO_OS_DB_CONNECT_TIMEOUT": "2"}, capture_output=True, text=True, timeout=30,
        )
        for conn in held[3:]:
            await conn.close()
        text = give_up.stdout + give_up.stderr
        assert give_up.returncode == 4, text
        assert "too many clients already" in give_up.stderr and "SOLO_OS_DB_POOL_SIZE" in give_up.stderr
        assert PASSWORD not in text + log.read_text()
        assert worker.poll() is None  # the first worker still runs


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_waiting_serve_answers_503_then_takes_deliveries_once_a_slot_frees(tmp_path: Path) -> None:
    with _private.cluster(max_connections=5) as c, _support.processes(tmp_path) as procs:
        url = await _private.database(c, "waiting")
        held = await _fill(url)
        port = _support.free_port()
        env = {**_support.env_for(url, COUNT_FILE=str(tmp_path / "counts")), "LOG_LEVEL": "info"}
        serve = procs.start([_support.SOLO_OS, "serve", APP, "--port", str(port)], env, "serve")
        log = tmp_path / "serve-0.log"
        await _wait_for(log, '"event":"store.connect_failed"', count=2)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"{base}/readyz")).status_code == 503
            assert (await client.get(f"{base}/healthz")).status_code == 200
            early = await _support.post(client, base, "early")
            assert early.status_code == 503 and early.headers.get("retry-after")
            for conn in held[:3]:
                await conn.close()
            freed = time.monotonic()
            while (await client.get(f"{base}/readyz")).status_code != 200:
                assert time.monotonic() - freed < connecting.MAX_DELAY + 10, _tail(log)
                await asyncio.sleep(0.1)
            late = await _support.post(client, base, "late")
        for conn in held[3:]:
            await conn.close()
        assert late.status_code == 200, late.text
        assert serve.poll() is None  # the same process: no restart


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_serve_out_of_new_connections_keeps_serving_with_those_it_has(tmp_path: Path) -> None:
    with _private.cluster(max_connections=12) as c, _support.processes(tmp_path) as procs:
        url = await _private.database(c, "busy")
        env = _support.env_for(url, COUNT_FILE=str(tmp_path / "counts"))
        serve, base = procs.serve(APP, env)
        warm = await _support.send_all(base, [f"warm-{i}" for i in range(200)], concurrency=32)
        assert set(warm.values()) == {200}
        held = await _fill(url)  # every other slot: serve can open no new connection
        try:
            keys = [f"full-{i}" for i in range(300)]
            answers = await _support.send_all(base, keys, concurrency=32)
        finally:
            for conn in held:
                await conn.close()
        alive = serve.poll() is None
        after = await _support.send_all(base, [f"after-{i}" for i in range(50)])
        conn = await asyncpg.connect(url)
        try:
            stored = {r["idempotency_key"] for r in await conn.fetch("SELECT idempotency_key FROM events")}
        finally:
            await conn.close()
    assert alive, procs.logs()
    # It served with the connections it had: a refused new one waits for one of those (was:
    # that batch answered 503).
    assert set(answers.values()) == {200}, (sorted(answers.values()), procs.logs())
    assert {k for k, v in answers.items() if v == 200} <= stored
    assert set(after.values()) == {200} and set(after) <= stored
