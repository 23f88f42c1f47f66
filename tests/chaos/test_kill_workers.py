"""kill -9 of worker processes at random moments during a 5,000-event run (PostgreSQL).

5,000 signed deliveries are stored through the store's own ingest (the ingress is not what
is under test here, and HTTP would only slow the run down on a busy CI machine) while three
``solo-os worker`` processes (lease 2 s) run them. Every 0.3-1.2 s one worker that holds
running executions at that moment gets SIGKILL and a replacement starts: ten kills in all.
The app (``apps/ledger.py``) runs two durable steps per invoice and writes
every run of a step's function to ``chaos_runs``.

What is asserted:

- nothing is lost: 5,000 events, 10,000 executions (two handlers), every one ``succeeded``
  (a budget of 100 attempts, so no kill can exhaust one into the dead letters);
- each step's effect happened exactly once where it counts: ``chaos_effects`` (keyed by
  execution and step) holds exactly one row per step, and ``steps`` one saved result;
- a step's function ran more than once only across a lost attempt: every extra run belongs
  to an attempt that the store recorded as ``lost`` (its worker was killed between the effect
  and the step's save — the one window a durable step cannot close, since the effect and the
  save are two transactions; a killed attempt accounts for at most one such run), and no run
  happened after the step was saved;
- a saved step is replayed, not re-run: every run of ``receipt`` got the token that ``steps``
  holds for ``charge`` of the same execution;
- the kills happened: all ten, and the store recorded lost attempts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import pytest

from solo_os import _loader
from solo_os import store as store_mod
from solo_os.runtime import ingress
from solo_os.sources import _base as sources_base
from tests import helpers
from tests.chaos import _support

APP = str(_support.APPS / "ledger.py")
EVENTS = 5_000
WORKERS = 3
KILLS = 10


async def _ingest(database_url: str, count: int) -> None:
    """``count`` signed invoices, stored as the ingress would store them, 500 per transaction."""
    application = _loader.load_app(APP)
    application.prepare({"BILLING_WEBHOOK_SECRET": helpers.SECRET})
    source = application.sources["billing"]
    store = store_mod.connect(database_url)
    try:
        for start in range(0, count, 500):
            batch = []
            for i in range(start, min(count, start + 500)):
                body, headers = helpers.delivery(helpers.invoice(), key=f"inv-{i}")
                event = ingress.build_event(
                    application, "billing", source, sources_base.DictHeaders(headers), body,
                    store_mod.utcnow(), lambda key: key or "chaos",
                )
                assert not isinstance(event, dict)
                batch.append(event)
            results = await store.ingest(batch)
            assert {r.outcome for r in results} == {"accepted"}
    finally:
        await store.close()


async def _holding_work(conn: asyncpg.Connection) -> set[int]:
    """Pids of workers that hold running executions now (worker ids are host:pid:random)."""
    rows = await conn.fetch("SELECT DISTINCT worker_id FROM executions WHERE status = 'running'")
    return {int(r["worker_id"].rsplit(":", 2)[1]) for r in rows if r["worker_id"]}


async def _pending(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM executions WHERE status IN ('pending', 'running')"
    ))


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_kill_9_of_workers_at_random_loses_nothing_and_repeats_no_saved_step(
    pg_url: str, tmp_path: Path
) -> None:
    db = await asyncpg.connect(pg_url)
    try:
        from tests.chaos.apps import ledger

        await db.execute(ledger.SCHEMA)
        env = _support.env_for(
            pg_url, CHAOS_LEDGER_DSN=pg_url, CHAOS_SLEEP_MS="200",
            SOLO_OS_LEASE_SECONDS="2", SOLO_OS_WORKER_CONCURRENCY="16", SOLO_OS_POLL_INTERVAL="0.2",
            # Random kills are not a poison: no execution may be dead for being lost too often.
            SOLO_OS_MAX_LOSSES="100",
        )
        rng = random.Random()
        kills = 0
        with _support.processes(tmp_path) as procs:
            live = [procs.worker(APP, env) for _ in range(WORKERS)]
            await _ingest(pg_url, EVENTS)
            deadline = time.monotonic() + 150
            while kills < KILLS and time.monotonic() < deadline and await _pending(db):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                busy = await _holding_work(db)
                victims = [p for p in live if p.pid in busy]
                if not victims:
                    continue
                victim = rng.choice(victims)
                victim.kill()
                victim.wait(10)
                live.remove(victim)
                kills += 1
                live.append(procs.worker(APP, env))
            while await _pending(db) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert all(p.poll() is None for p in live), procs.logs()
            assert await _pending(db) == 0, f"executions still outstanding\n{procs.logs()}"

        assert await db.fetchval("SELECT count(*) FROM events") == EVENTS
        by_status = dict(await db.fetch("SELECT status, count(*) FROM executions GROUP BY status"))
        assert by_status == {"succeeded": 2 * EVENTS}, by_status
        assert kills == KILLS, kills
        lost = {
            (r["execution_id"], r["attempt"])
            for r in await db.fetch("SELECT execution_id, attempt FROM attempts WHERE outcome = 'lost'")
        }
        assert lost, "kills should have cost some attempts"

        # Exactly one effect and one saved result per step.
        fulfil = await db.fetchval(
            "SELECT count(*) FROM executions WHERE handler = 'charge_and_mail'"
        )
        assert fulfil == EVENTS
        assert await db.fetchval("SELECT count(*) FROM chaos_effects") == 2 * EVENTS
        saved = {
            (r["execution_id"], r["name"]): (r["attempt"], r["result"])
            for r in await db.fetch("SELECT execution_id, name, attempt, result::text FROM steps")
        }
        assert len(saved) == 2 * EVENTS

        runs: dict[tuple[object, str], list[asyncpg.Record]] = defaultdict(list)
        for r in await db.fetch("SELECT execution_id, step, attempt, token FROM chaos_runs"):
            runs[(r["execution_id"], r["step"])].append(r)
        repeated = 0
        repeats_by_attempt: Counter[tuple[object, int]] = Counter()
        for (xid, step), done in runs.items():
            saved_attempt, _ = saved[(xid, step)]
            for r in done:
                # Never run again once saved.
                assert r["attempt"] <= saved_attempt, (xid, step, [dict(x) for x in done])
                if r["attempt"] < saved_attempt:
                    # An extra run: only by an attempt whose worker was killed.
                    assert (xid, r["attempt"]) in lost, (xid, step, dict(r))
                    repeated += 1
                    repeats_by_attempt[(xid, r["attempt"])] += 1
            if step == "receipt":
                charge_token = saved[(xid, "charge")][1].strip('"')
                assert {r["token"] for r in done} == {charge_token}, (xid, [dict(x) for x in done])
        assert sum(len(v) for v in runs.values()) == 2 * EVENTS + repeated
        print(f"kills {kills}, lost attempts {len(lost)}, step functions run again in the "
              f"window between effect and save: {repeated}")
        # A killed attempt was inside at most one step's window when it died.
        assert all(n == 1 for n in repeats_by_attempt.values()), repeats_by_attempt
    finally:
        await db.close()
