"""Schedules and their fires (``SchedulePort``).

Exactly once: every (schedule, fire time) is one row of ``schedule_fires`` under a unique
constraint, inserted with ``ON CONFLICT DO NOTHING`` in the same transaction as the execution
it starts, so any number of schedulers fire it once. A scheduler advances one schedule in one
transaction that first locks the schedule's row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a
replica that finds it locked leaves it to the holder; SQLite's single writer serializes), so
the overlap check ("is the previous run still going?") and the insert cannot interleave.

The decision of what to fire is not made here: ``advance_schedule`` reads the state, hands it
to a pure ``plan`` function (``scheduler.plan``) and writes what comes back.

Alerts a schedule raises (failure streaks, recoveries, missed windows) are recorded in the
same transaction (``_alerts.record``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import ids as _ids
from solo_os.core.records import AlertPolicy, FlowMark, Occurrence  # the plan's records live in core
from solo_os.core.records import FireKind as FireKind
from solo_os.core.records import FirePlan as FirePlan
from solo_os.core.records import FireStatus as FireStatus
from solo_os.core.records import PlannedFire as PlannedFire
from solo_os.core.records import ScheduleState as ScheduleState
from solo_os.core.records import Settled as Settled
from solo_os.store import _alerts, _db, _schema
from solo_os.store._alerts import _aware, _chunks

sc = _schema.schedules
sf = _schema.schedule_fires
ex = _schema.executions

ACTIVE = ("pending", "running")
TERMINAL = ("succeeded", "dead", "cancelled")
AUTOMATIC_KINDS = ("scheduled", "catchup")  # what "the last fire" of a schedule counts


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advanced:
    """What ``advance_schedule`` did."""

    state: ScheduleState
    inserted: tuple[PlannedFire, ...]
    executions: tuple[UUID, ...]
    last_fire: datetime | None
    busy: bool  # still has running or queued fires: keep watching it
    released: tuple[UUID, ...] = ()  # executions of queued fires started now


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule's stored state for ``schedules list``."""

    name: str
    paused: bool
    paused_at: datetime | None
    failures: int
    queued: int
    last_fire_at: datetime | None = None
    last_kind: str | None = None
    last_status: str | None = None  # the fire's: fired | skipped | queued | missed
    last_result: str | None = None  # its execution's status
    last_execution_id: UUID | None = None


@dataclass(frozen=True)
class Fire:
    id: UUID
    schedule: str
    fire_at: datetime
    kind: str
    status: str
    execution_id: UUID | None
    result: str | None
    missed_from: datetime | None
    missed_count: int | None
    created_at: datetime


def correlation_id(name: str, fire_at: datetime) -> str:
    """``cron:{schedule}:{fire time}``: every log line of the run carries it."""
    return f"cron:{name}:{fire_at.isoformat().replace('+00:00', 'Z')}"


# --- queries ------------------------------------------------------------------------------


class ScheduleQueries:
    """Schedules and their fires (``SchedulePort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    # --- schedules ------------------------------------------------------------------------

    async def ensure_schedules(self, names: Iterable[str], now: datetime) -> None:
        """Create the state row of each schedule not seen before (it fires from ``now`` on)."""
        rows = [
            {"name": n, "paused": False, "active_since": now, "failures": 0, "alerted": False,
             "created_at": now, "updated_at": now}
            for n in sorted(set(names))
        ]
        if not rows:
            return
        async with self._db.write() as conn:
            await conn.execute(self._db.insert(sc).on_conflict_do_nothing(index_elements=["name"]), rows)

    async def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        """Pause or resume ``name`` for every scheduler; returns whether it changed.

        Resuming does not catch up on the paused time: the schedule fires from now on.
        """
        await self.ensure_schedules([name], now)
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if paused:
            values["paused_at"] = now
        else:
            values.update(paused_at=None, active_since=now)
        async with self._db.write() as conn:
            res = await conn.execute(
                sa.update(sc).where(sc.c.name == name, sc.c.paused.is_not(paused)).values(**values)
            )
        return bool(res.rowcount)

    async def last_fires(self) -> dict[str, datetime]:
        """The latest scheduled or caught-up fire of every schedule."""
        q = (
            sa.select(sf.c.schedule, sa.func.max(sf.c.fire_at))
            .where(sf.c.kind.in_(AUTOMATIC_KINDS))
            .group_by(sf.c.schedule)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(q)).all()
        return {r[0]: found for r in rows if (found := _aware(r[1])) is not None}

    async def schedules_to_watch(self) -> set[str]:
        """Schedules with queued fires or fired executions not yet seen to finish."""
        q = sa.select(sf.c.schedule).where(_open_fire()).distinct()
        async with self._db.read() as conn:
            return {r[0] for r in await conn.execute(q)}

    async def advance_schedule(
        self,
        name: str,
        now: datetime,
        plan: Callable[[ScheduleState], FirePlan],
        policy: AlertPolicy | None = None,
    ) -> Advanced | None:
        """Lock ``name``, read its state, apply ``plan(state)``; None if another holds the lock."""
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    sa.select(sc).where(sc.c.name == name).with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:
                return None
            state = await self._state(conn, row)
            decided = plan(state)
            released: list[UUID] = []
            if decided.release and state.queued and not state.paused:
                released = await self._release_oldest(conn, name, decided.max_attempts, now, decided.flow)
            created = list(released)
            inserted, made = await self._insert_fires(
                conn, name, decided.fires, decided.max_attempts, now, decided.flow
            )
            created.extend(made)
            await _save_state(conn, name, state, decided, now)
            alerts = [*decided.occurrences, *(f.alert for f in inserted if f.alert is not None)]
            if policy is not None and alerts:
                await _alerts.record(self._db, conn, alerts, now, policy)
            busy_row = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(sf).where(sf.c.schedule == name, _open_fire())
                )
            ).scalar()
            last = (
                await conn.execute(
                    sa.select(sa.func.max(sf.c.fire_at)).where(
                        sf.c.schedule == name, sf.c.kind.in_(AUTOMATIC_KINDS)
                    )
                )
            ).scalar()
            if created:
                await self._db.notify(conn)
        if created:
            self._db.wake_local()
        return Advanced(
            state=state,
            inserted=tuple(inserted),
            executions=tuple(created),
            last_fire=_aware(last),
            busy=bool(busy_row),
            released=tuple(released),
        )

    async def _state(self, conn: AsyncConnection, row: Any) -> ScheduleState:
        name = row.name
        last = (
            await conn.execute(
                sa.select(sa.func.max(sf.c.fire_at)).where(
                    sf.c.schedule == name, sf.c.kind.in_(AUTOMATIC_KINDS)
                )
            )
        ).scalar()
        open_rows = (
            await conn.execute(
                sa.select(
                    sf.c.id, sf.c.fire_at, sf.c.kind, sf.c.status, sf.c.execution_id,
                    ex.c.status.label("x_status"), ex.c.last_error, ex.c.correlation_id,
                )
                .select_from(sf.outerjoin(ex, ex.c.id == sf.c.execution_id))
                .where(sf.c.schedule == name, _open_fire())
                .order_by(sf.c.fire_at)
            )
        ).all()
        active = queued = 0
        settled: list[Settled] = []
        for r in open_rows:
            if r.status == "queued":
                queued += 1
            elif r.x_status in ACTIVE:
                active += 1
            else:
                settled.append(
                    Settled(
                        fire_id=r.id, fire_at=r.fire_at, kind=r.kind, execution_id=r.execution_id,
                        status=r.x_status if r.x_status in TERMINAL else "gone",
                        error=r.last_error, correlation_id=r.correlation_id,
                    )
                )
        return ScheduleState(
            name=name,
            paused=bool(row.paused),
            active_since=row.active_since,
            last_fire=_aware(last),
            active=active,
            queued=queued,
            failures=int(row.failures),
            alerted=bool(row.alerted),
            settled=tuple(settled),
        )

    async def _release_oldest(
        self, conn: AsyncConnection, name: str, max_attempts: int, now: datetime,
        flow: FlowMark | None,
    ) -> list[UUID]:
        oldest = (
            await conn.execute(
                sa.select(sf.c.id, sf.c.fire_at)
                .where(sf.c.schedule == name, sf.c.status == "queued")
                .order_by(sf.c.fire_at)
                .limit(1)
            )
        ).first()
        if oldest is None:
            return []
        xid = _ids.uuid7()
        await conn.execute(sa.insert(ex), [_execution(xid, name, oldest.fire_at, max_attempts, now, flow)])
        await conn.execute(
            sa.update(sf)
            .where(sf.c.id == oldest.id, sf.c.status == "queued")
            .values(status="fired", execution_id=xid, updated_at=now)
        )
        return [xid]

    async def _insert_fires(
        self,
        conn: AsyncConnection,
        name: str,
        fires: Sequence[PlannedFire],
        max_attempts: int,
        now: datetime,
        flow: FlowMark | None = None,
    ) -> tuple[list[PlannedFire], list[UUID]]:
        """Insert ``fires`` (new ones only) and the executions of those that fire."""
        if not fires:
            return [], []
        rows: list[dict[str, Any]] = []
        for f in fires:
            rows.append(
                {
                    "id": _ids.uuid7(),
                    "schedule": name,
                    "fire_at": f.fire_at,
                    "kind": f.kind,
                    "status": f.status,
                    "execution_id": _ids.uuid7() if f.status == "fired" else None,
                    "result": None,
                    "missed_from": f.missed_from,
                    "missed_count": f.missed_count,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        inserted_ids: set[UUID] = set()
        for chunk in _chunks(rows, 500):
            res = await conn.execute(
                self._db.insert(sf)
                .on_conflict_do_nothing(index_elements=["schedule", "fire_at"])
                .returning(sf.c.id),
                chunk,
            )
            inserted_ids.update(r[0] for r in res)
        inserted = [f for f, r in zip(fires, rows, strict=True) if r["id"] in inserted_ids]
        executions = [
            _execution(r["execution_id"], name, r["fire_at"], max_attempts, now, flow)
            for r in rows
            if r["id"] in inserted_ids and r["execution_id"] is not None
        ]
        for chunk in _chunks(executions, 500):
            await conn.execute(sa.insert(ex), chunk)
        return inserted, [x["id"] for x in executions]

    async def add_fires(
        self,
        name: str,
        fires: Sequence[PlannedFire],
        max_attempts: int,
        now: datetime,
        flow: FlowMark | None = None,
    ) -> tuple[list[PlannedFire], list[UUID]]:
        """Record fires made by hand (trigger, backfill); returns the new ones and executions."""
        await self.ensure_schedules([name], now)
        async with self._db.write() as conn:
            inserted, created = await self._insert_fires(conn, name, fires, max_attempts, now, flow)
            if created:
                await self._db.notify(conn)
        if created:
            self._db.wake_local()
        return inserted, created

    async def schedule_info(self, names: Sequence[str]) -> dict[str, ScheduleInfo]:
        """Stored state of each of ``names`` (defaults for one never run)."""
        names = list(names)
        out: dict[str, ScheduleInfo] = {
            n: ScheduleInfo(name=n, paused=False, paused_at=None, failures=0, queued=0) for n in names
        }
        if not names:
            return out
        async with self._db.read() as conn:
            for r in await conn.execute(sa.select(sc).where(sc.c.name.in_(names))):
                out[r.name] = ScheduleInfo(
                    name=r.name, paused=bool(r.paused), paused_at=r.paused_at,
                    failures=int(r.failures), queued=0,
                )
            queued = await conn.execute(
                sa.select(sf.c.schedule, sa.func.count())
                .where(sf.c.schedule.in_(names), sf.c.status == "queued")
                .group_by(sf.c.schedule)
            )
            counts = {r[0]: int(r[1]) for r in queued}
            for n in names:
                latest = (
                    await conn.execute(
                        sa.select(
                            sf.c.fire_at, sf.c.kind, sf.c.status, sf.c.execution_id,
                            ex.c.status.label("x_status"),
                        )
                        .select_from(sf.outerjoin(ex, ex.c.id == sf.c.execution_id))
                        .where(sf.c.schedule == n)
                        .order_by(sf.c.fire_at.desc())
                        .limit(1)
                    )
                ).first()
                base = out[n]
                out[n] = ScheduleInfo(
                    name=n, paused=base.paused, paused_at=base.paused_at, failures=base.failures,
                    queued=counts.get(n, 0),
                    last_fire_at=latest.fire_at if latest else None,
                    last_kind=latest.kind if latest else None,
                    last_status=latest.status if latest else None,
                    last_result=latest.x_status if latest else None,
                    last_execution_id=latest.execution_id if latest else None,
                )
        return out

    async def list_fires(
        self, name: str | None = None, limit: int = 100, *, since: datetime | None = None
    ) -> list[Fire]:
        """Fires, oldest first (``limit`` 0: all)."""
        q = sa.select(sf).order_by(sf.c.fire_at)
        if name is not None:
            q = q.where(sf.c.schedule == name)
        if since is not None:
            q = q.where(sf.c.fire_at >= since)
        if limit:
            q = q.limit(limit)
        async with self._db.read() as conn:
            return [
                Fire(
                    id=r.id, schedule=r.schedule, fire_at=r.fire_at, kind=r.kind, status=r.status,
                    execution_id=r.execution_id, result=r.result, missed_from=r.missed_from,
                    missed_count=r.missed_count, created_at=r.created_at,
                )
                for r in await conn.execute(q)
            ]

    async def prune_fires(self, before: datetime) -> int:
        """Delete settled fires older than ``before``, keeping each schedule's latest one."""
        newer = sf.alias("newer")
        keep_latest = sa.exists().where(
            newer.c.schedule == sf.c.schedule,
            newer.c.kind.in_(AUTOMATIC_KINDS),
            newer.c.fire_at > sf.c.fire_at,
        )
        async with self._db.write() as conn:
            res = await conn.execute(
                sa.delete(sf).where(sf.c.fire_at < before, sa.not_(_open_fire()), keep_latest)
            )
        return int(res.rowcount or 0)

# --- helpers ---------------------------------------------------------------------------------


async def _save_state(
    conn: AsyncConnection, name: str, state: ScheduleState, decided: FirePlan, now: datetime
) -> None:
    """Mark the settled fires seen, and keep the plan's failure streak and alerted flag."""
    if state.settled:
        await conn.execute(
            sa.update(sf)
            .where(sf.c.id == sa.bindparam("b_id"))
            .values(result=sa.bindparam("b_result"), updated_at=now),
            [{"b_id": s.fire_id, "b_result": s.status} for s in state.settled],
        )
    if (decided.failures, decided.alerted) != (state.failures, state.alerted):
        await conn.execute(
            sa.update(sc)
            .where(sc.c.name == name)
            .values(failures=decided.failures, alerted=decided.alerted, updated_at=now)
        )


def _open_fire() -> sa.ColumnElement[bool]:
    """A fire still to be looked at: queued, or fired and not yet seen to finish."""
    return sa.or_(sf.c.status == "queued", sa.and_(sf.c.status == "fired", sf.c.result.is_(None)))


def _execution(
    xid: UUID, name: str, fire_at: datetime, max_attempts: int, now: datetime,
    flow: FlowMark | None = None,
) -> dict[str, Any]:
    """A fire's execution row; a schedule with ``concurrency=``/``priority=`` stores its flow
    key and priority, so the flow claim holds it within the limit, in order."""
    return {
        "id": xid,
        "event_id": None,
        "handler": name,
        "status": "pending",
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": now,
        "correlation_id": correlation_id(name, fire_at),
        "scheduled_at": fire_at,
        "created_at": now,
        "updated_at": now,
        "flow_key": None if flow is None else flow.flow_key,
        "priority": (flow.priority or None) if flow is not None else None,
    }


__all__ = ["AlertPolicy", "Occurrence"]
