"""The worker's side of SQLite's hand-off (``store/_sqlite_claim.py``).

In a process that ingests and runs a worker (``solo-os run``), an ingest transaction leases
due executions to the worker for the slots it has free, and hands them over once it commits.
``Taker`` is what the store sees of the worker: the free slots (none while the claim loop does
not run, or while an execution lost before waits or runs: it runs alone), the slots an ingest
holds until its commit (``handing``, which the worker's own claims leave alone), and where
the handed executions go: with those the worker claimed ahead, started at once in the free
slots. One that arrives as the worker stops is given back with them, or its lease runs out.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from solo_os.core import records
from solo_os.store import ports

#: At most this many executions per hand-off (the worker's claim batch).
MAX_BATCH = 200


class _Ahead(Protocol):
    ready: collections.deque[records.Claimed]


class Host(Protocol):
    """The worker (``runtime/worker.py``), as the hand-off reads it."""

    store: Any
    worker_id: str
    lease_seconds: float
    clock: Callable[[], datetime]
    concurrency: int
    looping: bool
    _running: set[UUID]
    _inflight: dict[UUID, Any]
    _alone: UUID | None
    _draining_for_lost: bool

    @property
    def _ahead(self) -> _Ahead: ...

    def _start_ready(self) -> None: ...


class Taker:
    """An ingest's view of the worker of its process (``_sqlite_claim.Taker``); offered to the
    store when it has a hand-off (SQLite)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.worker_id = host.worker_id
        self.lease_seconds = host.lease_seconds
        self.clock = host.clock
        self.handing = 0  # slots held by an ingest until it commits
        if isinstance(host.store, ports.HandOffPort):
            host.store.hand_off_to(self)

    def reserve(self, held: int) -> int:
        """Free slots an ingest may fill (held until ``take``): those neither running, nor
        claimed ahead, nor held by another hand-off or by ``held`` (a claim under way)."""
        h = self._host
        if not h.looping or h._alone is not None or h._draining_for_lost:
            return 0
        ready = len(h._ahead.ready)
        free = min(h.concurrency - len(h._running), 2 * h.concurrency - len(h._inflight)) - ready
        n = max(0, min(free - self.handing - held, MAX_BATCH))
        self.handing += n
        return n

    def take(self, claimed: Sequence[records.Claimed], reserved: int) -> None:
        """Start what an ingest leased to this worker (its commit is done); free the rest."""
        self.handing -= reserved
        self._host._ahead.ready.extend(claimed)
        if self._host.looping:
            self._host._start_ready()
