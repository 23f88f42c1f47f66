"""LogPort: an attempt's log lines are stored once, read back in emission order."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from solo_os.store._logs import LogLine
from solo_os.store.ports import IngestPort, LogPort, QueuePort
from solo_os.testing import Clock
from tests.store._support import event


class Ports(IngestPort, QueuePort, LogPort, Protocol):
    """What these tests use of the store."""


async def test_lines_per_attempt_in_order_and_written_once(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock())])
    [c] = await store.claim("w", 1, clock(), 30)
    t = clock()
    first = [
        LogLine(1, 0, t, "info", "charging", {"cents": 4900}),
        LogLine(1, 1, t + timedelta(seconds=1), "error", "declined", None),
    ]
    await store.save_logs(c.id, 1, first)
    await store.save_logs(c.id, 1, [LogLine(1, 0, t, "info", "rewritten", None)])  # no effect
    await store.save_logs(c.id, 2, [LogLine(2, 0, t + timedelta(seconds=9), "info", "retry", None)])
    await store.save_logs(c.id, 3, [])
    lines = await store.list_logs(c.id)
    assert [(x.attempt, x.seq, x.level, x.message) for x in lines] == [
        (1, 0, "info", "charging"),
        (1, 1, "error", "declined"),
        (2, 0, "info", "retry"),
    ]
    assert lines[0].fields == {"cents": 4900} and lines[0].at == t
    assert len(await store.list_logs(c.id, limit=2)) == 2
