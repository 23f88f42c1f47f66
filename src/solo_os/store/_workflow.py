"""Durable workflows in the store: memoized calls, suspension, resumption, cancellation.

A handler's ``ctx.sleep`` / ``wait_for_event`` / ``send`` / ``invoke`` each keep one
``workflow_calls`` row by name. Suspending writes the call and moves the execution from
``running`` to ``waiting`` in one transaction (the attempt is recorded as ``suspended`` and
given back: ``max_attempts`` grows by one). It becomes ``pending`` again when its wake time
passes (``wake_due``), when a matching event is ingested (``on_ingest``, in the ingest
transaction), or when its child finishes (``resume_parents``, in the finish transaction).
On PostgreSQL the database matches waits (``_pg_workflow``, migration 0008), on both ingest paths.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import records
from solo_os.core import workflow as wf
from solo_os.store import _db, _schema

ev = _schema.events
ex = _schema.executions
at = _schema.attempts
wc = _schema.workflow_calls
ms = _schema.workflow_match_sets

TERMINAL = ("succeeded", "dead", "cancelled")
CANCEL = ""  # the name of the cancel request row (a call's name is never empty)


@dataclass(frozen=True)
class Call:
    """One memoized workflow call of an execution (a row of ``workflow_calls``)."""

    execution_id: UUID
    name: str
    kind: str
    status: str  # waiting, done, timed_out
    created_at: datetime
    wake_at: datetime | None = None
    source: str | None = None
    type: str | None = None
    match: Any = None
    result: Any = None
    event_id: UUID | None = None
    child_id: UUID | None = None
    ended_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Call:
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__ if k in m})


@dataclass(frozen=True)
class Suspension:
    """What a handler's call asks the store to wait for (``WorkflowQueries.suspend``)."""

    execution_id: UUID
    attempt: int
    name: str
    kind: str
    started_at: datetime
    wake_at: datetime | None
    source: str | None = None
    type: str | None = None
    match: dict[str, Any] | None = None
    child: records.NewEvent | None = None  # invoke: the child's input event
    child_handler: str | None = None
    child_id: UUID | None = None
    child_max_attempts: int = 1


FAR = datetime(9999, 1, 1, tzinfo=UTC)  # no timeout: the run_after of a wait without one


class WorkflowQueries:
    """The workflow calls of executions (``WorkflowPort``)."""

    def __init__(
        self, db: _db.Database,
        ingest: Callable[[Sequence[records.NewEvent]], Awaitable[list[records.IngestResult]]],
    ) -> None:
        self._db = db
        self._ingest = ingest  # the store's (PostgreSQL's hot path included)

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        """Store events (``ctx.send``) as a delivery would be, waiters and cancels included."""
        return await self._ingest(batch)

    async def load_calls(self, execution_id: UUID) -> dict[str, Call]:
        async with self._db.read() as conn:
            rows = await conn.execute(sa.select(wc).where(wc.c.execution_id == execution_id))
            return {r.name: Call.from_row(r) for r in rows if r.name != CANCEL}

    async def list_calls(self, execution_id: UUID) -> list[Call]:
        """The execution's calls in the order they were first reached (the timeline)."""
        calls = await self.load_calls(execution_id)
        return sorted(calls.values(), key=lambda c: c.created_at)

    async def parent_of(self, execution_id: UUID) -> UUID | None:
        async with self._db.read() as conn:
            return await conn.scalar(sa.select(ex.c.parent_id).where(ex.c.id == execution_id))

    async def children_of(self, execution_id: UUID) -> list[UUID]:
        async with self._db.read() as conn:
            rows = await conn.execute(sa.select(ex.c.id).where(ex.c.parent_id == execution_id))
            return [r.id for r in rows]

    async def record_call(
        self, execution_id: UUID, name: str, kind: str, now: datetime, *,
        result: Any = None, event_id: UUID | None = None,
    ) -> None:
        """A call that completed at once (``send``): kept for the memo and the timeline."""
        async with self._db.write() as conn:
            await conn.execute(
                self._db.insert(wc).on_conflict_do_nothing(index_elements=["execution_id", "name"]),
                {"execution_id": execution_id, "name": name, "kind": kind, "status": "done",
                 "result": result, "event_id": event_id, "created_at": now, "ended_at": now},
            )

    async def settle(
        self, execution_id: UUID, name: str, status: str, result: Any, now: datetime
    ) -> Call | None:
        """Close a waiting call (its time came); the call as it stands after (an event or the
        child may have closed it first)."""
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(wc)
                .where(wc.c.execution_id == execution_id, wc.c.name == name, wc.c.status == "waiting")
                .values(status=status, result=result, ended_at=now)
            )
            row = (
                await conn.execute(
                    sa.select(wc).where(wc.c.execution_id == execution_id, wc.c.name == name)
                )
            ).first()
        return Call.from_row(row) if row is not None else None

    async def child_state(self, child_id: UUID) -> tuple[str, Any, str | None] | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(ex.c.status, ex.c.result, ex.c.last_error).where(ex.c.id == child_id)
                )
            ).first()
        return None if row is None else (row.status, row.result, row.last_error)

    async def suspend(self, s: Suspension, now: datetime) -> Call | None:
        """Register the call and move the execution to ``waiting``, in one transaction.

        Returns the call when it is already settled instead (a wait whose matching event was
        accepted before the wait was reached): the handler goes on without suspending.
        """
        async with self._db.write() as conn:
            if s.kind == "wait":
                await self._db.lock_waits(conn, [wf.lock_key(s.source or "", s.type or "")], False)
            found = await self._register(conn, s, now)
            if found is not None:
                return found
            if s.child is not None:
                await self._start_child(conn, s)
            timer = s.wake_at if await self._to_waiting(conn, s, now) else None
            if timer is not None:  # the wake loops sleep towards it (NOTIFY)
                await self._db.dialect.notify_timer(conn, timer)
        if timer is not None:
            self._db.timer_stored(timer)
        return None

    async def _register(self, conn: AsyncConnection, s: Suspension, now: datetime) -> Call | None:
        paths = wf.paths_key(s.match) if s.kind == "wait" else None
        key = self._db.dialect.wait_key(s.match, paths or "") if s.kind == "wait" else None
        await conn.execute(
            self._db.insert(wc)
            .values(match_key=key)
            .on_conflict_do_nothing(index_elements=["execution_id", "name"]),
            {
                "execution_id": s.execution_id, "name": s.name, "kind": s.kind,
                "status": "waiting", "wake_at": s.wake_at, "source": s.source, "type": s.type,
                "match": s.match, "match_paths": paths, "child_id": s.child_id, "created_at": now,
            },
        )
        if s.kind != "wait":
            return None
        await conn.execute(
            self._db.insert(ms).on_conflict_do_nothing(),
            {"source": s.source, "type": s.type, "match_paths": paths},
        )
        event = await self._earlier_event(conn, s)
        if event is None:
            return None
        await conn.execute(
            sa.update(wc)
            .where(wc.c.execution_id == s.execution_id, wc.c.name == s.name, wc.c.status == "waiting")
            .values(status="done", result=event[1], event_id=event[0], ended_at=now)
        )
        row = (
            await conn.execute(
                sa.select(wc).where(wc.c.execution_id == s.execution_id, wc.c.name == s.name)
            )
        ).one()
        return Call.from_row(row)

    async def _earlier_event(self, conn: AsyncConnection, s: Suspension) -> tuple[UUID, Any] | None:
        """The first matching event accepted since the execution was created (not its own
        event, nor one an earlier wait of it took)."""
        own = (
            await conn.execute(
                sa.select(ex.c.created_at, ex.c.event_id).where(ex.c.id == s.execution_id)
            )
        ).one()
        taken = sa.select(wc.c.event_id).where(
            wc.c.execution_id == s.execution_id, wc.c.event_id.is_not(None)
        )
        q = (
            sa.select(ev.c.id, sa.type_coerce(ev.c.payload, sa.Text).label("payload"))
            .where(
                ev.c.source == s.source, ev.c.type == s.type, ev.c.status == "accepted",
                ev.c.received_at >= own.created_at, ev.c.id.not_in(taken),
                *([ev.c.id != own.event_id] if own.event_id is not None else []),
            )
            .order_by(ev.c.received_at, ev.c.id)
        )
        for row in await conn.execute(q):
            if row.payload is None:
                continue
            payload = _doc(row.payload)
            if wf.matches(s.match, payload):
                return row.id, payload
        return None

    async def _start_child(self, conn: AsyncConnection, s: Suspension) -> None:
        child = s.child
        if child is None or s.child_id is None or s.child_handler is None:
            raise ValueError("an invoke's suspension names its child")
        stored = await conn.execute(
            self._db.insert(ev)
            .values(payload=self._db.json_text("p_payload"))
            .on_conflict_do_nothing(index_elements=["source", "idempotency_key"])
            .returning(ev.c.id),
            {
                "id": child.id, "source": child.source, "idempotency_key": child.idempotency_key,
                "type": child.type, "status": "accepted", "p_payload": child.payload,
                "body": child.body, "headers": {}, "correlation_id": child.correlation_id,
                "received_at": child.received_at, "updated_at": child.received_at,
            },
        )
        if stored.first() is None:
            return  # started by an earlier attempt
        await conn.execute(
            self._db.insert(ex),
            {
                "id": s.child_id, "event_id": child.id, "handler": s.child_handler,
                "status": "pending", "attempts": 0, "max_attempts": s.child_max_attempts,
                "run_after": child.received_at, "correlation_id": child.correlation_id,
                "parent_id": s.execution_id, "created_at": child.received_at,
                "updated_at": child.received_at,
            },
        )
        await self._db.notify(conn)

    async def _to_waiting(self, conn: AsyncConnection, s: Suspension, now: datetime) -> bool:
        res = await conn.execute(
            sa.update(ex)
            .where(ex.c.id == s.execution_id, ex.c.attempts == s.attempt, ex.c.status == "running")
            .values(
                status="waiting", run_after=s.wake_at or FAR, max_attempts=ex.c.max_attempts + 1,
                worker_id=None, lease_expires_at=None, started_at=None, last_error=None,
                updated_at=now,
            )
            .returning(ex.c.worker_id)
        )
        if res.first() is None:
            return False  # the lease was lost meanwhile: the other attempt owns the execution
        await conn.execute(
            self._db.insert(at).on_conflict_do_nothing(index_elements=["execution_id", "attempt"]),
            {
                "execution_id": s.execution_id, "attempt": s.attempt, "worker_id": "",
                "started_at": s.started_at, "ended_at": now, "outcome": "suspended",
                "error_type": None, "error_message": f"{s.kind} {s.name!r}", "traceback": None,
            },
        )
        return True

    # --- resumption ---------------------------------------------------------------------------

    async def wake_due(self, now: datetime, limit: int = 1000) -> int:
        """Waiting executions whose time came (a sleep's end, a timeout) become pending."""
        due = (
            sa.select(ex.c.id)
            .where(ex.c.status == "waiting", ex.c.run_after <= now)
            .order_by(ex.c.run_after)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._db.write() as conn:
            res = await conn.execute(
                sa.update(ex)
                .where(ex.c.id.in_(due), ex.c.status == "waiting")
                .values(status="pending", updated_at=now)
            )
            woke = int(res.rowcount or 0)
            if woke:
                await self._db.notify(conn)
        if woke:
            self._db.wake_local()
        return woke

    async def wait_for_timers(self, until: datetime | None, timeout: float) -> None:
        """Sleep towards ``until`` unless an earlier wake time is stored meanwhile."""
        await self._db.wait_for_timers(until, timeout)

    async def next_wake(self) -> datetime | None:
        async with self._db.read() as conn:
            found: datetime | None = await conn.scalar(
                sa.select(sa.func.min(ex.c.run_after, type_=_schema.UTCDateTime)).where(
                    ex.c.status == "waiting"
                )
            )
        return found

    # --- cancellation ---------------------------------------------------------------------------

    async def cancel_requested(self, execution_id: UUID) -> bool:
        async with self._db.read() as conn:
            found = await conn.scalar(
                sa.select(wc.c.kind).where(wc.c.execution_id == execution_id, wc.c.name == CANCEL)
            )
        return found is not None


async def on_ingest(
    db: _db.Database, conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
) -> bool:
    """Resume the waiters of newly accepted ``events`` and apply their ``cancel_on`` rules,
    inside the ingest transaction. True when something became pending."""
    if not events:
        return False
    woke = await db.dialect.resume_waiters(conn, events, now)  # None: matched in Python here
    woke = await _match_in_python(db, conn, events, now) if woke is None else woke
    rules = [(e, r) for e in events for r in e.cancels]
    if rules:
        cancelled = await cancel_matching(db, conn, rules, now)
        woke = await resume_parents(db, conn, cancelled, now) or woke
    return woke


async def _match_in_python(
    db: _db.Database, conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
) -> bool:
    pairs = sorted({(e.source, e.type) for e in events})
    await db.lock_waits(conn, [wf.lock_key(s, t) for s, t in pairs], True)
    bound = {"sources": sorted({s for s, _ in pairs}), "types": sorted({t for _, t in pairs})}
    wanted = set(pairs)
    sets = [r for r in await conn.execute(_MATCH_SETS, bound) if (r.source, r.type) in wanted]
    return bool(sets) and await _resume_waiters(db, conn, wf.plan(events, sets), now)


# Built once, bound per call (every ingest and finish runs one): the match sets of a batch's
# sources and types (the pairs are kept in Python), a finish's waiting calls, their children.
_MATCH_SETS = sa.select(ms.c.source, ms.c.type, ms.c.match_paths).where(
    ms.c.source.in_(sa.bindparam("sources", expanding=True)),
    ms.c.type.in_(sa.bindparam("types", expanding=True)),
)
_WAITING_CALLS = sa.select(wc.c.execution_id, wc.c.name, wc.c.child_id).where(
    wc.c.child_id.in_(sa.bindparam("ids", expanding=True)), wc.c.status == "waiting"
)
_CHILDREN = sa.select(ex.c.id, ex.c.status, ex.c.result, ex.c.last_error).where(
    ex.c.id.in_(sa.bindparam("ids", expanding=True))
)


async def _resume_waiters(
    db: _db.Database, conn: AsyncConnection, lookups: dict[tuple[str, str, str, str], records.NewEvent],
    now: datetime,
) -> bool:
    if not lookups:
        return False
    found = (
        await conn.execute(
            sa.select(wc.c.execution_id, wc.c.name, wc.c.source, wc.c.type,
                      wc.c.match_paths, wc.c.match_key)
            .where(
                wc.c.status == "waiting", wc.c.kind == "wait",
                sa.or_(*(
                    sa.and_(wc.c.source == k[0], wc.c.type == k[1], wc.c.match_paths == k[2],
                            wc.c.match_key == k[3])
                    for k in lookups
                )),
            )
        )
    ).all()
    resumed: list[UUID] = []
    for w in found:
        e = lookups[(w.source, w.type, w.match_paths, w.match_key)]
        await conn.execute(
            sa.update(wc)
            .where(wc.c.execution_id == w.execution_id, wc.c.name == w.name,
                   wc.c.status == "waiting")
            .values(status="done", result=json.loads(e.payload or "null"), event_id=e.id,
                    ended_at=now)
        )
        resumed.append(w.execution_id)
    return await resume(db, conn, resumed, now)


async def resume_parents(
    db: _db.Database, conn: AsyncConnection, child_ids: Sequence[UUID], now: datetime
) -> bool:
    """Children that ended: their parents' invoke calls settle and the parents resume."""
    if not child_ids:
        return False
    # The waiting calls first, through their child index: most batches of outcomes name no child
    # at all. (Joined to executions in one statement, SQLite planned a batch of ~200 ids as a
    # walk of the status index over every finished execution: a finish that slowed as history
    # grew.) The children are then read by primary key alone.
    calls = (await conn.execute(_WAITING_CALLS, {"ids": list(child_ids)})).all()
    if not calls:
        return False
    children = (await conn.execute(_CHILDREN, {"ids": [c.child_id for c in calls]})).all()
    ended = {x.id: x for x in children if x.status in TERMINAL}
    settled = [(c, ended[c.child_id]) for c in calls if c.child_id in ended]
    for c, x in settled:
        await conn.execute(
            sa.update(wc)
            .where(wc.c.execution_id == c.execution_id, wc.c.name == c.name,
                   wc.c.status == "waiting")
            .values(status="done", ended_at=now,
                    result={"status": x.status, "value": x.result, "error": x.last_error})
        )
    return await resume(db, conn, [c.execution_id for c, _ in settled], now)


def _doc(value: Any) -> Any:
    """A payload read back: JSON text (SQLite) or already decoded (PostgreSQL's driver)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


async def resume(
    db: _db.Database, conn: AsyncConnection, ids: Sequence[UUID], now: datetime
) -> bool:
    """Waiting executions of ``ids`` become pending now (and workers are woken)."""
    if not ids:
        return False
    res = await conn.execute(
        sa.update(ex)
        .where(ex.c.id.in_(sorted(set(ids))), ex.c.status == "waiting")
        .values(status="pending", run_after=now, updated_at=now)
    )
    if not res.rowcount:
        return False
    await db.notify(conn)
    db.wake_local()
    return True


async def cancel_matching(
    db: _db.Database, conn: AsyncConnection, rules: Sequence[tuple[records.NewEvent, Any]],
    now: datetime,
) -> list[UUID]:
    """``cancel_on``: the rule's handler's open executions whose event matches are cancelled
    (pending, waiting) or asked to stop at their next step boundary (running)."""
    cancelled: list[UUID] = []
    for event, rule in rules:
        rows = await conn.execute(
            sa.select(ex.c.id, ex.c.status, sa.type_coerce(ev.c.payload, sa.Text).label("payload"))
            .join(ev, ev.c.id == ex.c.event_id)
            .where(ex.c.handler == rule.handler,
                   ex.c.status.in_(("pending", "waiting", "running")), ev.c.id != event.id)
        )
        for r in rows:
            original = _doc(r.payload)
            if not all(
                not wf.missing(v := wf.get_path(original, path)) and wf.canonical(v) == value
                for path, value in rule.pairs
            ):
                continue
            await conn.execute(
                db.insert(wc).on_conflict_do_nothing(index_elements=["execution_id", "name"]),
                {"execution_id": r.id, "name": CANCEL, "kind": "cancel", "status": "done",
                 "event_id": event.id, "created_at": now, "ended_at": now},
            )
            if r.status != "running":
                done = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.id == r.id, ex.c.status.in_(("pending", "waiting")))
                    .values(status="cancelled", last_error=f"cancelled by event {event.id}",
                            updated_at=now)
                )
                if done.rowcount:
                    cancelled.append(r.id)
    return cancelled
