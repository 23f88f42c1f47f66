"""Flow control in the store (SPEC section 7): the ingest-time decisions (rate limit,
singleton, debounce, batch, a key that cannot be evaluated) and the flow claim (concurrency,
throttle, priority). Not the sign-in throttle (``_throttle``) nor ``ctx.http``'s outbound
limits (``_ratelimit``).

Ingest decisions run inside the ingest transaction, under a lock per key (``Dialect.lock_keys``:
PostgreSQL transaction advisory locks taken in one order; SQLite's single writer), so
concurrent ingests on many hosts decide one after the other. The flow claim runs in one
transaction under one lock, so no two workers hand out the same slot: running executions per
key are counted from the executions table itself (status ``running``), so finishing, reaping,
releasing and cancelling give a slot back exactly when the execution stops running, and no
counter can drift. On PostgreSQL a plan without Throttle or Batch takes the one-statement
claim of ``_pg_flow`` instead, under the same lock and with the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import flow as flow_core
from solo_os.core import records
from solo_os.store import _db, _rows, _schema

ev = _schema.events
ex = _schema.executions
fs = _schema.flow_state
bi = _schema.batch_items
wc = _schema.workflow_calls
CLAIM_LOCK = "solo-os:flow-claim"
WINDOW = 4  # due candidates read per free slot (saturated keys are filtered out in SQL)
ROUNDS = 4  # windows read per claim at most (each leaves out the keys the last one filled)


def _epoch(t: datetime) -> float:
    return t.timestamp()


class FlowQueries:
    """Ingest decisions and the flow claim (``QueuePort.claim`` calls the latter)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    # --- ingest ---------------------------------------------------------------------------

    async def decide(
        self, conn: AsyncConnection, rows: list[dict[str, Any]], marks: list[records.FlowMark | None]
    ) -> list[dict[str, Any]]:
        """Settle each flow-controlled execution's ingest-time decision and insert it (one by
        one: a later delivery of the same batch sees the earlier one); returns the plain rows
        for the caller's bulk insert. Runs inside the ingest transaction."""
        keys = sorted({k for m in marks if m is not None for k in _lock_keys(m)})
        if keys:
            await self._db.dialect.lock_keys(conn, keys)
        plain: list[dict[str, Any]] = []
        for row, mark in zip(rows, marks, strict=True):
            if mark is None:
                plain.append(row)
                continue
            row.update(flow_key=mark.flow_key, throttle_key=mark.throttle_key,
                       priority=mark.priority or None)
            if mark.error is not None:
                row.update(status="dead", last_error=f"FlowKeyError: {mark.error}"[:4000])
            elif mark.rate_limit is not None:
                await self._rate_limit(conn, row, mark.rate_limit)
            elif mark.singleton is not None:
                await self._singleton(conn, row, mark.singleton)
            elif mark.debounce is not None:
                await self._debounce(conn, row, mark.debounce)
            joined = mark.batch is not None and row["status"] == "pending"
            if joined and mark.batch is not None and await self._join_batch(conn, row, mark.batch):
                continue
            first = row.pop("batch_first", False)
            await conn.execute(sa.insert(ex).values(**row))
            if first:
                await conn.execute(sa.insert(bi).values(
                    execution_id=row["id"], event_id=row["event_id"], handler=row["handler"], position=0
                ))
        return plain

    async def _state(self, conn: AsyncConnection, key: str) -> list[float] | None:
        got = await conn.scalar(sa.select(fs.c.times).where(fs.c.key == key))
        return None if got is None else [float(t) for t in got]

    async def _save(self, conn: AsyncConnection, key: str, times: list[float],
                    until: datetime | None = None) -> None:
        stmt = self._db.insert(fs).values(key=key, times=times, until=until)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=["key"], set_={"times": stmt.excluded.times, "until": stmt.excluded.until}
        ))

    async def _rate_limit(self, conn: AsyncConnection, row: dict[str, Any],
                          spec: tuple[str, int, float]) -> None:
        key, limit, period = spec
        now = _epoch(row["created_at"])
        times = [t for t in (await self._state(conn, key) or []) if t > now - period]
        if len(times) >= limit:
            row.update(status="skipped", last_error=f"rate_limited: over {limit} per {period:g}s")
        else:
            times.append(now)
        await self._save(conn, key, times)

    async def _singleton(self, conn: AsyncConnection, row: dict[str, Any], spec: tuple[str, str]) -> None:
        key, mode = spec
        row["group_key"] = key
        live = ex.c.status.in_(("pending", "running"))
        if mode == "skip":
            found = await conn.scalar(sa.select(ex.c.id).where(ex.c.group_key == key, live).limit(1))
            if found is not None:
                row.update(status="skipped", group_key=None,
                           last_error=f"singleton: execution {found} of this key is pending or running")
            return
        why = f"singleton: cancelled in favour of execution {row['id']}"
        await conn.execute(
            sa.update(ex).where(ex.c.group_key == key, ex.c.status == "pending").values(
                status="cancelled", group_key=None, updated_at=row["created_at"], last_error=why,
            )
        )
        await _stop_running(self._db, conn, key, row)

    async def _debounce(self, conn: AsyncConnection, row: dict[str, Any],
                        spec: tuple[str, float, float | None]) -> None:
        key, period, timeout = spec
        now = row["created_at"]
        row["group_key"] = key
        superseded = (await conn.execute(
            sa.update(ex).where(ex.c.group_key == key, ex.c.status == "pending").values(
                status="skipped", group_key=None, updated_at=now,
                last_error=f"debounced: superseded by execution {row['id']}",
            ).returning(ex.c.id)
        )).all()
        first = now
        if superseded:
            times = await self._state(conn, key)
            if times:
                first = datetime.fromtimestamp(times[0], tz=now.tzinfo)
        await self._save(conn, key, [_epoch(first)])
        run_after = now + timedelta(seconds=period)
        if timeout is not None:
            run_after = min(run_after, first + timedelta(seconds=timeout))
        row["run_after"] = max(now, run_after)

    async def _join_batch(self, conn: AsyncConnection, row: dict[str, Any],
                          spec: tuple[str, int, float]) -> bool:
        """Add the event to its key's open batch (True), or open one with this row (False)."""
        key, max_size, timeout = spec
        # The open batch's row is locked: a claim taking it waits for this ingest to commit,
        # and then reads this event among its items (or this ingest sees it taken).
        found = await conn.scalar(
            sa.select(ex.c.id)
            .where(ex.c.group_key == key, ex.c.status == "pending", ex.c.attempts == 0)
            .order_by(ex.c.id).limit(1).with_for_update()
        )
        n = 0 if found is None else int(await conn.scalar(
            sa.select(sa.func.count()).select_from(bi).where(bi.c.execution_id == found)
        ) or 0)
        if found is not None and n < max_size:
            await conn.execute(sa.insert(bi).values(
                execution_id=found, event_id=row["event_id"], handler=row["handler"], position=n
            ))
            if n + 1 >= max_size:  # full: due now, and closed to newcomers
                await conn.execute(sa.update(ex).where(ex.c.id == found).values(
                    run_after=row["created_at"], group_key=None, updated_at=row["created_at"]
                ))
            return True
        full = max_size <= 1
        row.update(group_key=None if full else key,
                   run_after=row["created_at"] + timedelta(seconds=0 if full else timeout))
        row["batch_first"] = True  # its batch_items row is written after the execution's
        return False

    # --- why pending executions wait (metrics) -------------------------------------------

    async def waiting_counts(self, now: datetime) -> dict[str, int]:
        """Pending executions held back, by reason (``solo_os_waiting_executions``), in one
        statement over the not-yet-due and the flow-controlled pending executions."""
        blocked = sa.select(sa.func.substr(fs.c.key, 3)).where(fs.c.until > now, fs.c.key.like("t\x1f%"))
        later = ex.c.run_after > now
        due = sa.and_(ex.c.run_after <= now, ex.c.flow_key.is_not(None))
        throttled = sa.and_(due, ex.c.throttle_key.in_(blocked))
        gk = sa.func.coalesce(ex.c.group_key, "")

        def n(cond: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

        q = sa.select(
            n(sa.and_(later, gk.like("d\x1f%"))).label("debounce"),
            n(sa.and_(later, gk.like("b\x1f%"))).label("batch"),
            n(sa.and_(later, gk.not_like("d\x1f%"), gk.not_like("b\x1f%"))).label("run_after"),
            n(throttled).label("throttle"),
            n(sa.and_(due, ex.c.flow_key != "", sa.not_(throttled))).label("concurrency"),
        ).where(ex.c.status == "pending", sa.or_(later, ex.c.flow_key.is_not(None)))
        async with self._db.read() as conn:
            row = (await conn.execute(q)).one()
        return {r: int(row._mapping[r] or 0) for r in WAIT_REASONS}

    # --- the flow claim -------------------------------------------------------------------

    async def claim(
        self, plan: flow_core.Plan, worker_id: str, limit: int, now: datetime, lease_seconds: float,
        lost: bool | None = False,
    ) -> list[records.Claimed]:
        """Lease up to ``limit`` due flow-controlled executions within every limit. ``lost``:
        False takes only executions never lost with a process (a key whose due head was lost
        waits for it: FIFO per key), True at most one lost before (run alone), None any."""
        limit = min(limit, 1) if lost else limit
        async with self._db.write() as conn:
            await self._db.dialect.lock_keys(conn, [CLAIM_LOCK])
            keyed = [ex.c.flow_key.is_not(None), ex.c.flow_key != ""]
            # Running per key, and (count -1) keys whose earlier execution waits for its retry:
            # those wait with it (FIFO per key). One round trip.
            per_key = sa.union_all(
                sa.select(ex.c.flow_key, sa.func.count().label("n"))
                .where(ex.c.status == "running", *keyed).group_by(ex.c.flow_key),
                sa.select(ex.c.flow_key, sa.literal(-1).label("n")).where(
                    ex.c.status == "pending", *keyed, ex.c.run_after > now, ex.c.attempts > 0
                ),
                sa.select(ex.c.flow_key, sa.literal(-1).label("n")).where(
                    sa.true() if lost is False else sa.false(), ex.c.status == "pending", *keyed,
                    ex.c.run_after <= now, ex.c.losses > 0,
                ),
            )
            running: dict[str, int] = {}
            full: list[str] = []
            for key, n in (await conn.execute(per_key)).all():
                if n < 0:
                    full.append(key)
                else:
                    running[key] = int(n)
            full += [k for k, n in running.items() if n >= (plan.limit_of(k) or n + 1)]
            blocked: list[str] = []
            if plan.throttles:
                blocked = list((await conn.scalars(
                    sa.select(fs.c.key).where(fs.c.until > now, fs.c.key.like("t\x1f%"))
                )).all())
            picked = await self._pick(conn, plan, limit, now, running, full, blocked, lost)
            if not picked:
                return []
            return await self._lease(conn, picked, worker_id, now, lease_seconds, plan.batch)

    async def _pick(
        self, conn: AsyncConnection, plan: flow_core.Plan, limit: int, now: datetime,
        running: dict[str, int], full: list[str], blocked: list[str], lost: bool | None,
    ) -> list[UUID]:
        """The executions to lease, in claim order, within every limit. Reads windows of the
        oldest due ones; a key that is full or waits is left out of the next window, so one busy
        key cannot fill every window and starve the others."""
        throttle = _Throttles(plan, now)
        picked: list[UUID] = []
        out = set(full)  # concurrency keys at their limit, or whose head waits (FIFO)
        t_out = {k[2:] for k in blocked}  # throttle keys without a start left
        size = limit * WINDOW + 8
        for _ in range(ROUNDS):
            rows = await self._window(conn, plan, now, out, t_out, picked, size, lost)
            await throttle.load(conn, rows)
            for r in rows:
                if len(picked) >= limit:
                    break
                ck, tk = r.flow_key or None, r.throttle_key
                if (ck and ck in out) or (tk and tk in t_out):
                    continue
                cap = plan.limit_of(ck) if ck else None
                ok = cap is None or running.get(ck or "", 0) < cap
                if ok and tk is not None:
                    ok = throttle.take(tk)
                if not ok:  # this one waits, and so do the later ones of its keys
                    out.update([ck] if ck else [])
                    t_out.update([tk] if tk else [])
                    continue
                if ck:
                    running[ck] = running.get(ck, 0) + 1
                    if cap is not None and running[ck] >= cap:
                        out.add(ck)
                picked.append(r.id)
            if len(picked) >= limit or len(rows) < size:
                break
        for key, (times, until) in throttle.changed().items():
            await self._save(conn, key, times, until)
        return picked

    async def _window(
        self, conn: AsyncConnection, plan: flow_core.Plan, now: datetime, out: set[str],
        t_out: set[str], picked: list[UUID], size: int, lost: bool | None,
    ) -> list[Any]:
        # FIFO by the event's received time (then id); priority moves it that many seconds.
        order: Any = ex.c.created_at
        if plan.priority:
            order = self._db.dialect.epoch_seconds(ex.c.created_at) - sa.func.coalesce(ex.c.priority, 0)
        q = sa.select(ex.c.id, ex.c.flow_key, ex.c.throttle_key).where(
            ex.c.status == "pending", ex.c.flow_key.is_not(None), ex.c.run_after <= now
        )
        if lost is not None:  # a lost one runs alone (True); the others never with it (False)
            q = q.where(ex.c.losses > 0 if lost else ex.c.losses == 0)
        if out:
            q = q.where(ex.c.flow_key.not_in(sorted(out)))
        if t_out:
            q = q.where(sa.or_(ex.c.throttle_key.is_(None), ex.c.throttle_key.not_in(sorted(t_out))))
        if picked:
            q = q.where(ex.c.id.not_in(picked))
        return list((await conn.execute(q.order_by(order, ex.c.id).limit(size))).all())

    async def _lease(
        self, conn: AsyncConnection, ids: list[UUID], worker_id: str, now: datetime,
        lease_seconds: float, batches: bool,
    ) -> list[records.Claimed]:
        claimed = (await conn.execute(
            sa.update(ex).where(ex.c.id.in_(ids), ex.c.status == "pending").values(
                status="running", attempts=ex.c.attempts + 1, worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds), started_at=now, updated_at=now,
            ).returning(
                ex.c.id, ex.c.event_id, ex.c.handler, ex.c.attempts, ex.c.max_attempts,
                ex.c.correlation_id, ex.c.scheduled_at, ex.c.trace_parent, ex.c.losses,
            )
        )).all()
        items: dict[UUID, list[UUID]] = {}
        for r in (await conn.execute(
            sa.select(bi.c.execution_id, bi.c.event_id).where(bi.c.execution_id.in_(ids))
            .order_by(bi.c.execution_id, bi.c.position)
        )).all() if batches else ():
            items.setdefault(r.execution_id, []).append(r.event_id)
        event_ids = {r.event_id for r in claimed if r.event_id is not None}
        event_ids.update(e for batch in items.values() for e in batch)
        events = await events_by_id(conn, event_ids)
        order = {i: n for n, i in enumerate(ids)}
        out = []
        for r in sorted(claimed, key=lambda r: order[r.id]):
            c = _rows.claimed(r._mapping, events[r.event_id]._mapping if r.event_id in events else None)
            if r.id in items:
                docs = [_rows.read_input(events[e].payload, events[e].body, None)[0]
                        for e in items[r.id] if e in events]
                c = dataclasses.replace(c, batch=tuple(docs))
            out.append(c)
        return out


WAIT_REASONS = ("concurrency", "throttle", "debounce", "batch", "run_after")
FLOW_COLUMNS = (ex.c.flow_key, ex.c.throttle_key, ex.c.group_key)
SKIP_REASONS = ("rate_limited", "debounced", "singleton")


async def annotate(conn: AsyncConnection, rows: Sequence[Any], now: datetime) -> list[dict[str, Any]]:
    """``rows`` (mappings with the flow columns) as dicts with ``reason``: why a pending one
    has not started (``concurrency``, ``throttle``, ``debounce``, ``batch``, ``run_after``;
    None when it is due and free to start), or why a skipped one was skipped."""
    out = [dict(r) for r in rows]
    keys = {r["flow_key"] for r in out if r["status"] == "pending" and r.get("flow_key")}
    busy: set[str] = set()
    blocked: set[str] = set()
    if keys:
        busy = set((await conn.scalars(
            sa.select(ex.c.flow_key).distinct().where(ex.c.status == "running", ex.c.flow_key.in_(keys))
        )).all())
        blocked = set((await conn.scalars(
            sa.select(fs.c.key).where(fs.c.until > now, fs.c.key.like("t\x1f%"))
        )).all())
    earlier = _earlier(out)
    for r in out:
        r["reason"] = _reason(r, now, busy, blocked, earlier)
    return out


def _earlier(rows: list[dict[str, Any]]) -> set[UUID]:
    """Pending rows behind an older pending row of the same key (in this listing)."""
    first: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r["created_at"], r["id"])):
        k = r.get("flow_key")
        if r["status"] == "pending" and k and k not in first:
            first[k] = r
    return {r["id"] for r in rows if r.get("flow_key") and first.get(r["flow_key"]) not in (None, r)}


def _reason(r: dict[str, Any], now: datetime, busy: set[str], blocked: set[str],
            earlier: set[UUID]) -> str | None:
    if r["status"] == "skipped":
        found = (r.get("last_error") or "").split(":", 1)[0]
        return found if found in SKIP_REASONS else None
    if r["status"] != "pending":
        return None
    gk = r.get("group_key") or ""
    if r.get("run_after") is not None and r["run_after"] > now:
        return "debounce" if gk.startswith("d\x1f") else "batch" if gk.startswith("b\x1f") else "run_after"
    if r.get("flow_key") and (r["flow_key"] in busy or r["id"] in earlier):
        return "concurrency"
    if r.get("throttle_key") and f"t\x1f{r['throttle_key']}" in blocked:
        return "throttle"
    return None


async def _stop_running(
    db: _db.Database, conn: AsyncConnection, key: str, row: dict[str, Any]
) -> None:
    """Singleton ``cancel``: the key's running execution is asked to stop at its next step
    boundary (the ``cancel_on`` request row, read by ``Workflow.check_cancel``); it stays
    ``running`` until it stops, and no longer holds the key."""
    running = list((await conn.scalars(
        sa.update(ex).where(ex.c.group_key == key, ex.c.status == "running")
        .values(group_key=None).returning(ex.c.id)
    )).all())
    if running:
        await conn.execute(
            db.insert(wc).on_conflict_do_nothing(index_elements=["execution_id", "name"]),
            [{"execution_id": xid, "name": "", "kind": "cancel", "status": "done",
              "event_id": row["event_id"], "created_at": row["created_at"],
              "ended_at": row["created_at"]} for xid in running],
        )


def _lock_keys(m: records.FlowMark) -> list[str]:
    return [spec[0] for spec in (m.rate_limit, m.singleton, m.debounce, m.batch) if spec is not None]


class _Throttles:
    """Sliding windows of start times per throttle key: at most ``capacity`` starts in any
    ``period``; a full key is marked ``until`` its oldest start leaves the window."""

    def __init__(self, plan: flow_core.Plan, now: datetime) -> None:
        self.plan, self.now, self.at = plan, now, _epoch(now)
        self.times: dict[str, list[float]] = {}
        self._changed: set[str] = set()

    async def load(self, conn: AsyncConnection, rows: Sequence[Any]) -> None:
        """The recent starts of the throttle keys among ``rows`` not read yet."""
        wanted = {f"t\x1f{r.throttle_key}" for r in rows if r.throttle_key is not None}
        keys = sorted(wanted - set(self.times))
        if keys:
            got = await conn.execute(sa.select(fs.c.key, fs.c.times).where(fs.c.key.in_(keys)))
            for key, times in got.all():
                self.times[key] = [float(t) for t in times]
            for key in keys:
                self.times.setdefault(key, [])

    def take(self, throttle_key: str) -> bool:
        spec = self.plan.throttle_of(throttle_key)
        if spec is None:
            return True
        capacity, period = spec
        key = f"t\x1f{throttle_key}"
        times = [t for t in self.times.get(key, []) if t > self.at - period]
        self.times[key] = times
        if len(times) >= capacity:
            return False
        times.append(self.at)
        self._changed.add(key)
        return True

    def changed(self) -> dict[str, tuple[list[float], datetime | None]]:
        out: dict[str, tuple[list[float], datetime | None]] = {}
        for key in self._changed:
            times = self.times[key]
            spec = self.plan.throttle_of(key[2:])
            until = None
            if spec is not None and len(times) >= spec[0]:
                until = datetime.fromtimestamp(times[0] + spec[1], tz=self.now.tzinfo)
            out[key] = (times, until)
        return out


async def events_by_id(conn: AsyncConnection, event_ids: set[UUID]) -> dict[UUID, Any]:
    """The events of claimed executions, by id, their JSON as stored text (decoded per
    execution by ``_rows``, never by the driver). Both claims use it, plain and flow."""
    if not event_ids:
        return {}
    rows = await conn.execute(_EVENTS_BY_ID, {"ids": list(event_ids)})
    return {r.id: r for r in rows}


# Built once (a claim's transaction runs it): bound per call, with an expanding IN.
_EVENTS_BY_ID = sa.select(
    ev.c.id, ev.c.source, ev.c.type, ev.c.idempotency_key, ev.c.received_at,
    sa.cast(ev.c.headers, sa.Text).label("headers"),
    sa.cast(ev.c.payload, sa.Text).label("payload"),
    sa.case((ev.c.payload.is_(None), ev.c.body), else_=sa.null()).label("body"),
).where(ev.c.id.in_(sa.bindparam("ids", expanding=True)))
