"""Queue consumers under failure, every broker at once, on PostgreSQL.

- ``kill -9`` of ``solo-os consume`` mid-stream, then a restart: every distinct message is
  stored once (nothing lost), each event has one execution and each handler runs once
  (nothing run twice), and every message ends acknowledged.
- The database stopped for 10 s mid-stream (a private cluster, never the shared server): no
  message is acknowledged unless its event is in the database at that moment (checked at every
  acknowledgement through a separate connection), nothing is pulled while the store is down,
  and everything is consumed once it returns, without restarting anything.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from solo_os import store as store_mod
from tests import helpers
from tests.chaos import _cluster, _private, _support
from tests.queue import _brokers, _checks
from tests.queue.apps import orders

APP = str(Path(orders.__file__))
ROOT = str(Path(__file__).resolve().parents[2])
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DISTINCT, DUPLICATES = 400, 40  # per source; the three real brokers at once
# moto's SQS server is far too slow for these under load (see test_consume_volume.VOLUME)
KINDS = ("redis", "rabbitmq", "nats")


async def _kits(make_kit: Any) -> list[_brokers.Kit]:
    kits = [await make_kit(kind) for kind in KINDS]
    for kit in kits:
        refs = [f"{kit.kind}-{i:05d}" for i in range(DISTINCT)]
        await kit.publish([_brokers.message(kit.kind, r) for r in refs + refs[:DUPLICATES]])
    return kits


def _env(kits: list[_brokers.Kit]) -> dict[str, str]:
    env: dict[str, str] = {"Q_NATS_ACK_WAIT": "3", "Q_SQS_VISIBILITY": "3"}
    for kit in kits:
        env.update(kit.env())
    return env


async def _accepted(store: Any) -> dict[str, int]:
    return {k: (await _checks.figures(store, k))["events"].get("accepted", 0) for k in KINDS}


async def _all_acked(kits: list[_brokers.Kit]) -> bool:
    # RabbitMQ counts unacknowledged deliveries only once their consumer is gone: checked after
    return all([await k.unacked() == 0 for k in kits if k.kind != "rabbitmq"])


async def _assert_stored_once(store: Any) -> None:
    for kind in KINDS:
        f = await _checks.figures(store, kind)
        assert f["events"] == {"accepted": DISTINCT}, (kind, f)
        assert f["distinct"] == {"accepted": DISTINCT}, (kind, f)
        assert sum(f["executions"].values()) == DISTINCT and f["max_executions_per_event"] == 1, (kind, f)
        ids = {orjson.loads(_brokers.message(kind, f"{kind}-{i:05d}"))["id"] for i in range(DISTINCT)}
        assert await _checks.keys(store, kind) == ids


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_9_of_the_consumer_mid_stream_loses_nothing_and_runs_nothing_twice(
    make_kit: Any, pg_url: str, tmp_path: Path
) -> None:
    kits = await _kits(make_kit)
    env = _support.env_for(pg_url, PYTHONPATH=ROOT, **_env(kits))
    total = DISTINCT * len(kits)
    store = store_mod.connect(pg_url)
    try:
        with _support.processes(tmp_path) as procs:
            first = procs.start([_support.SOLO_OS, "consume", APP], env, "consume")

            async def some_stored() -> bool:
                return sum((await _accepted(store)).values()) >= total // 4

            await helpers.eventually(some_stored, timeout=90, interval=0.05)
            first.kill()  # SIGKILL: no drain, batches in hand neither committed nor acknowledged
            first.wait()
            at_kill = sum((await _accepted(store)).values())
            assert at_kill < total, "killed mid-stream"
            procs.start([_support.SOLO_OS, "consume", APP], env, "consume")

            async def all_stored() -> bool:
                return sum((await _accepted(store)).values()) >= total and await _all_acked(kits)

            await helpers.eventually(all_stored, timeout=150, interval=0.25)
        await _assert_stored_once(store)
    finally:
        await store.close()
    assert [await k.unacked() for k in kits] == [0] * len(kits), "every message acknowledged"
    runs: Counter[tuple[str, str]] = Counter()

    async def ran(s: Any) -> bool:
        return all([(await _checks.figures(s, k))["executions"].get("succeeded", 0) == DISTINCT
                    for k in KINDS])

    async with helpers.running(orders.make_app(_env(kits), runs), pg_url, roles=("worker",), env={}) as h:
        await helpers.eventually(lambda: ran(h.store), timeout=60, interval=0.2)
    assert len(runs) == total and set(runs.values()) == {1}, "each handler ran once"


@pytest.fixture
def cluster() -> Iterator[_cluster.Cluster]:
    """A private cluster (``tests/chaos/_private.py``: fails under CI=true, skips elsewhere)."""
    with _private.cluster() as c:
        yield c


class AckSpy:
    """Wraps a consumer's broker: at each acknowledgement, checks through its own connection
    that every acknowledged message's event is in the database (waiting for the database if
    it is down), and records when messages were pulled."""

    def __init__(self, consumer: Any, url: str) -> None:
        self.consumer = consumer
        self.url = url
        self.violations: list[str] = []
        self.acked = 0
        self.pulls: list[tuple[float, int]] = []
        self._ack, self._fetch = consumer.broker.ack, consumer.broker.fetch
        consumer.broker.ack, consumer.broker.fetch = self.ack, self.fetch

    async def fetch(self, limit: int, wait: float) -> Any:
        found = await self._fetch(limit, wait)
        if found:
            self.pulls.append((time.monotonic(), len(found)))
        return found

    async def ack(self, messages: Any) -> None:
        keys = {orjson.loads(m.body)["id"] for m in messages}
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
                break
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.2)
        try:
            rows = await conn.fetch(
                "SELECT idempotency_key FROM events WHERE source = $1 AND idempotency_key = ANY($2)",
                self.consumer.name, list(keys),
            )
        finally:
            await conn.close()
        missing = keys - {r[0] for r in rows}
        if missing:
            self.violations.append(f"{self.consumer.name}: acknowledged without event: {sorted(missing)[:3]}")
        await self._ack(messages)
        self.acked += len(messages)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_database_stopped_10s_mid_stream_acknowledges_nothing_unstored_and_resumes(
    make_kit: Any, cluster: _cluster.Cluster
) -> None:
    admin = await asyncpg.connect(cluster.url(), timeout=10)
    await admin.execute("CREATE DATABASE queue")
    await admin.close()
    url = cluster.url("queue")
    s = store_mod.connect(url)
    await s.migrate()
    await s.close()
    kits = await _kits(make_kit)
    app = orders.make_app(_env(kits), batch_size=50)
    total = DISTINCT * len(kits)
    async with helpers.running(app, url, roles=("consume",), env={}) as h:
        assert h.runtime.consumers is not None
        spies = [AckSpy(c, url) for c in h.runtime.consumers.consumers]

        async def some_stored() -> bool:
            return sum(spy.acked for spy in spies) >= total // 5

        await helpers.eventually(some_stored, timeout=90, interval=0.05)
        cluster.stop()  # immediate: every connection dropped, open transactions lost
        down_at = time.monotonic()
        await asyncio.sleep(10)
        up_at = time.monotonic()
        cluster.start()
        pulled_while_down = [
            n for spy in spies for t, n in spy.pulls if down_at + 1.0 < t < up_at
        ]

        async def all_in() -> bool:
            return sum(spy.acked for spy in spies) >= (DISTINCT + DUPLICATES) * len(kits)

        await helpers.eventually(all_in, timeout=120, interval=0.25)
        await helpers.eventually(lambda: _all_acked(kits), timeout=30, interval=0.25)
    assert not [v for spy in spies for v in spy.violations]
    assert pulled_while_down == [], "nothing is pulled while the store is down"
    store = store_mod.connect(url)
    try:
        await _assert_stored_once(store)
    finally:
        await store.close()
    assert [await k.unacked() for k in kits] == [0] * len(kits), "every message acknowledged"
