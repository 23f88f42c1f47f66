"""SQLite's plain claim statement, and the hand-off: the claim run inside an ingest.

SQLite has one writer, and in ``solo-os run`` a delivery used to take two writing
transactions before its handler started: the ingest that stores it, then the worker's claim.
When the process that ingests also runs a worker, the ingest transaction runs that worker's
claim itself, after storing the new executions (``HandOff.lease``): the same statement with
the same columns (status, attempts, lease owner and expiry, started_at), oldest due first,
for at most the worker's free slots. Once the transaction commits, the leased executions go
to the worker in memory (``Handed.deliver``). A process killed after the commit loses
nothing: the executions are leased like any claim's, and taken back when the lease expires.

The hand-off is off when the app has flow control (those slots are the flow claim's to fill
first, ``_flow``) and while the worker looks for or runs an execution lost before (it runs
alone); the slots a claim of the worker under way will fill are not offered twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import records
from solo_os.store import _flow, _rows, _schema

ex = _schema.executions


class Taker(Protocol):
    """The worker of this process, as the hand-off sees it (``runtime/worker.py``)."""

    worker_id: str
    lease_seconds: float
    clock: Callable[[], datetime]

    def reserve(self, held: int) -> int:
        """Slots this ingest may fill now, held until ``take`` (0: none, or not now); ``held``
        are free slots a claim of this worker under way will fill."""

    def take(self, claimed: Sequence[records.Claimed], reserved: int) -> None:
        """Start ``claimed`` (leased to this worker) and free the rest of ``reserved``."""


def claim_statement(
    worker_id: str, limit: int, now: datetime, lease_seconds: float, lost: bool | None
) -> tuple[Any, dict[str, Any]]:
    """Lease up to ``limit`` due executions outside flow control to ``worker_id``, oldest due
    first (``lost``: see ``SQLiteStore.claim``): the statement and its parameters."""
    params = {
        "c_worker": worker_id, "c_limit": limit, "c_now": now,
        "c_expires": now + timedelta(seconds=lease_seconds),
    }
    return _claim_statement(lost), params


@functools.cache
def _claim_statement(lost: bool | None) -> Any:
    """Built once per kind and bound per claim: it runs in the writer's turn, where building
    it anew (and SQLAlchemy's cache key of a new statement) took ~80 us of ~120."""
    now = sa.bindparam("c_now", type_=_schema.UTCDateTime)
    cond = [ex.c.status == "pending", ex.c.flow_key.is_(None), ex.c.run_after <= now]
    if lost is not None:
        cond.append(ex.c.losses > 0 if lost else ex.c.losses == 0)
    due_q = sa.select(ex.c.id).where(*cond).order_by(ex.c.run_after)
    due_q = due_q.limit(sa.bindparam("c_limit", type_=sa.Integer))
    if lost:
        due_q = due_q.with_hint(ex, "INDEXED BY ix_executions_lost", "sqlite")
    due = due_q.with_for_update(skip_locked=True).cte("due")
    return (
        sa.update(ex)
        .where(ex.c.id == due.c.id)
        .values(
            status="running",
            attempts=ex.c.attempts + 1,
            worker_id=sa.bindparam("c_worker", type_=sa.String),
            lease_expires_at=sa.bindparam("c_expires", type_=_schema.UTCDateTime),
            started_at=now,
            updated_at=now,
        )
        .returning(
            ex.c.id, ex.c.event_id, ex.c.handler, ex.c.attempts, ex.c.max_attempts,
            ex.c.correlation_id, ex.c.scheduled_at, ex.c.trace_parent, ex.c.losses,
        )
    )


@dataclasses.dataclass
class Handed:
    """Executions leased by an ingest transaction, for the worker once it commits."""

    taker: Taker
    reserved: int
    claimed: list[records.Claimed]
    #: The worker's own claim comes next and takes what is left due: no need to wake it.
    claim_follows: bool = False

    def deliver(self) -> None:
        """The transaction committed: the worker starts them."""
        self.taker.take(self.claimed, self.reserved)

    def cancel(self) -> None:
        """The transaction failed: nothing was leased; the slots are free again."""
        self.taker.take([], self.reserved)


class HandOff:
    """The ingest's claim for the worker of this process (``_ingest`` calls ``lease``)."""

    def __init__(self) -> None:
        self.taker: Taker | None = None
        self.enabled = True  # off when the app has flow control
        self._pending = 0  # the limit of the taker's own claim under way
        self._isolating = 0  # lost executions looked for or claimed: they run alone

    @contextlib.contextmanager
    def claiming(self, worker_id: str, limit: int, lost: bool | None) -> Iterator[None]:
        """Around a claim of this process until its transaction ends: the taker's own claim
        holds its slots (and takes what an ingest meanwhile leaves due); looking for a lost
        execution stops hand-offs (it runs alone)."""
        if self.taker is None or worker_id != self.taker.worker_id:
            yield
            return
        pending = limit if not lost else 0
        self._pending += pending
        self._isolating += bool(lost)
        try:
            yield
        finally:
            self._pending -= pending
            self._isolating -= bool(lost)

    @contextlib.contextmanager
    def isolating(self) -> Iterator[None]:
        """Around the look for lost executions (``lost_due``): no hand-off meanwhile."""
        self._isolating += 1
        try:
            yield
        finally:
            self._isolating -= 1

    async def lease(
        self, conn: AsyncConnection, accepted: Sequence[records.NewEvent]
    ) -> Handed | None:
        """In the ingest transaction, after its executions are stored: the worker's claim,
        for the slots it has free (None: no worker here to take any)."""
        taker = self.taker
        if taker is None or not self.enabled:
            return None
        reserved = 0 if self._isolating else taker.reserve(self._pending)
        handed = Handed(taker, reserved, [], self._pending > 0)
        if reserved <= 0:
            return handed
        try:
            stmt, params = claim_statement(
                taker.worker_id, reserved, taker.clock(), taker.lease_seconds, lost=False
            )
            rows = (await conn.execute(stmt, params)).all()
            fresh = {e.id: e for e in accepted}
            older = {r.event_id for r in rows if r.event_id is not None and r.event_id not in fresh}
            stored = await _flow.events_by_id(conn, older)
            handed.claimed = [_claimed(r, fresh, stored) for r in rows]
        except BaseException:
            handed.cancel()
            raise
        return handed


def _claimed(
    row: Any, fresh: dict[Any, records.NewEvent], stored: dict[Any, Any]
) -> records.Claimed:
    """A leased execution; the event of this ingest from memory, an older one as read."""
    event = fresh.get(row.event_id)
    if event is None:
        e = stored.get(row.event_id)
        return _rows.claimed(row._mapping, e._mapping if e is not None else None)
    c = _rows.claimed(
        row._mapping,
        {
            "source": event.source,
            "type": event.type,
            "idempotency_key": event.idempotency_key,
            "received_at": event.received_at,
            "payload": event.payload,
            "body": event.body if event.payload is None else None,
            "headers": None,  # a dict already: no JSON text to decode
        },
    )
    headers = dict(event.headers) if event.headers is not None else None
    return dataclasses.replace(c, headers=headers)
