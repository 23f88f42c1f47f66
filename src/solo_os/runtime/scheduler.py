"""The scheduler: turns ``@app.cron`` schedules into executions, exactly once across replicas.

Each scheduler process sleeps until the next fire of any schedule (at most ``max_sleep``, with
jitter), then advances every schedule that is due or has runs in flight. Advancing one schedule
is one transaction (``store.advance_schedule``): lock the schedule's row, read its state, let
the pure ``plan`` decide, insert the fires (unique per schedule and fire time) with their
executions, and notify the workers, so a fire starts within milliseconds. Any number of
schedulers can run; a fire is inserted once whichever gets there first.

``plan`` (``core/schedule_plan.py``) is where the policies live:

- **catch-up**: fires more than ``LATE_GRACE`` late are *missed* (the scheduler was down).
  ``catchup="none"`` runs none of them, ``"latest"`` the latest one, ``"all"`` every one
  within ``catchup_window``; the rest are recorded as one ``missed`` row and alerted.
- **overlap** (the previous run still pending or running): ``skip`` records the fire as
  ``skipped``; ``allow`` starts it anyway; ``queue`` records it as ``queued``, and the scheduler
  starts the oldest queued fire once nothing of the schedule runs (within ``max_sleep``).
  Caught-up and backfilled fires are queued rather than skipped: they were asked for.
- **failure streaks**: a fire whose execution went dead counts as a failure; after
  ``alert_after_failures`` in a row an alert goes out, and another on the first success.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.core.schedule_plan import LATE_GRACE as LATE_GRACE  # the plan lives in core
from solo_os.core.schedule_plan import MAX_FIRES_PER_PASS as MAX_FIRES_PER_PASS
from solo_os.core.schedule_plan import plan as plan
from solo_os.observability import metrics
from solo_os.store import _schedules as fires_mod
from solo_os.store import ports

log = structlog.get_logger("solo_os.scheduler")
FIRE_RETENTION = timedelta(days=7)
_PRUNE_EVERY = timedelta(hours=1)
_EPSILON = timedelta(microseconds=1)


# --- the loop ----------------------------------------------------------------------------------


class Scheduler:
    """Fires an app's schedules until stopped. Safe to run in any number of processes."""

    def __init__(
        self,
        application: app_mod.App,
        store: ports.SchedulePort,
        *,
        clock: Callable[[], datetime] = store_mod.utcnow,
        max_sleep: float = 1.0,
        grace: timedelta = LATE_GRACE,
        rng: random.Random | None = None,
    ) -> None:
        self.app = application
        self.store = store
        self.clock = clock
        self.max_sleep = max_sleep
        self.grace = grace
        self._rng = rng or random.Random()
        self._next: dict[str, datetime] = {}
        self._ensured = False
        self._pruned_at: datetime | None = None

    @property
    def schedules(self) -> dict[str, app_mod.Schedule]:
        return dict(self.app.schedules)

    def _policy(self) -> records.AlertPolicy | None:
        alerting = self.app.alerting
        if alerting is None:
            return None
        return records.AlertPolicy(alerting.window, alerting.group_wait)

    def _max_attempts(self, name: str) -> int:
        return self.app.policy(self.app.handlers[name]).max_attempts or 1

    async def run(self, stop: asyncio.Event) -> None:
        """Fire schedules until ``stop`` is set."""
        if not self.app.schedules:
            return
        log.info("scheduler.started", schedules=sorted(self.app.schedules))
        failures = 0
        while not stop.is_set():
            try:
                await self.tick(self.clock())
                failures = 0
                delay = self._sleep_for(self.clock())
            except errors.StoreError as exc:
                failures += 1
                delay = min(10.0, 0.2 * 2**failures)
                log.warning("scheduler.tick_failed", error=str(exc), retry_in=round(delay, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        log.info("scheduler.stopped")

    def _sleep_for(self, now: datetime) -> float:
        """Until the next fire of any schedule; at most ``max_sleep`` (with jitter)."""
        bound = self.max_sleep * self._rng.uniform(0.8, 1.0)
        if not self._next:
            return bound
        until = (min(self._next.values()) - now).total_seconds()
        return max(0.0, min(bound, until))

    async def tick(self, now: datetime) -> dict[str, fires_mod.Advanced]:
        """Advance every schedule that is due, or has runs in flight, at ``now``."""
        schedules = self.app.schedules
        if not self._ensured:
            await self.store.ensure_schedules(schedules, now)
            self._ensured = True
        watch = await self.store.schedules_to_watch()
        done: dict[str, fires_mod.Advanced] = {}
        for name, schedule in schedules.items():
            due = self._next.get(name)
            if name not in watch and due is not None and due > now:
                continue
            advanced = await self.store.advance_schedule(
                name,
                now,
                functools.partial(
                    plan, schedule, now=now, max_attempts=self._max_attempts(name), grace=self.grace
                ),
                self._policy(),
            )
            if advanced is None:  # another scheduler holds it right now: look again shortly
                self._next[name] = now + timedelta(seconds=self._rng.uniform(0.02, 0.1))
                continue
            done[name] = advanced
            for f in advanced.inserted:
                if f.status == "fired":
                    metrics.cron_lag.labels(name).observe(max(0.0, (now - f.fire_at).total_seconds()))
            self._report(name, advanced)
            self._next[name] = self._next_due(schedule, advanced, now)
        await self._prune(now)
        return done

    def _next_due(
        self, schedule: app_mod.Schedule, advanced: fires_mod.Advanced, now: datetime
    ) -> datetime:
        if advanced.state.paused:
            return now + timedelta(seconds=self.max_sleep)
        base = max(advanced.last_fire or advanced.state.active_since, advanced.state.active_since)
        nxt = schedule.cron.next_after(base)
        if nxt <= now:  # a backlog larger than one pass: continue right away
            return now
        return nxt

    def _report(self, name: str, advanced: fires_mod.Advanced) -> None:
        for f in advanced.inserted:
            fields = {"schedule": name, "fire_at": f.fire_at.isoformat(), "kind": f.kind}
            if f.status == "fired":
                log.info(
                    "schedule.fired", **fields,
                    correlation_id=fires_mod.correlation_id(name, f.fire_at),
                )
            elif f.status == "missed":
                log.warning(
                    "schedule.missed", **fields, missed=f.missed_count,
                    missed_from=f.missed_from.isoformat() if f.missed_from else None,
                )
            else:
                log.info(f"schedule.{f.status}", **fields)
        for xid in advanced.released:
            log.info("schedule.released", schedule=name, execution_id=str(xid))
        for s in advanced.state.settled:
            log.debug("schedule.settled", schedule=name, fire_at=s.fire_at.isoformat(), result=s.status)

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        deleted = await self.store.prune_fires(now - FIRE_RETENTION)
        if deleted:
            log.info("schedule.pruned", fires=deleted)


# --- by hand: trigger and backfill -----------------------------------------------------------


@dataclass(frozen=True)
class Backfilled:
    fires: int  # fire times in the range
    created: int  # new fires recorded
    existing: int  # already recorded before (not duplicated)
    executions: tuple[UUID, ...]


def lookup(application: app_mod.App, name: str) -> app_mod.Schedule:
    found = application.schedules.get(name)
    if found is None:
        known = ", ".join(sorted(application.schedules)) or "none"
        raise errors.ConfigError(f"no schedule named {name!r} in this app (schedules: {known})")
    return found


async def trigger(
    application: app_mod.App, store: ports.SchedulePort, name: str, now: datetime
) -> UUID:
    """Run ``name`` now, whatever its overlap policy and pause: one fire marked ``manual``."""
    lookup(application, name)
    max_attempts = application.policy(application.handlers[name]).max_attempts or 1
    _, created = await store.add_fires(
        name, [records.PlannedFire(now, "manual", "fired")], max_attempts, now,
        application.schedules[name].flow,
    )
    if not created:
        raise errors.StoreError(f"a fire of {name!r} at {now.isoformat()} already exists; try again")
    return created[0]


def backfill_times(schedule: app_mod.Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The fire times of ``schedule`` in ``[start, end]``."""
    return list(schedule.cron.between(start - _EPSILON, end))


async def backfill(
    application: app_mod.App,
    store: ports.SchedulePort,
    name: str,
    times: list[datetime],
    *,
    now: datetime,
    queue: bool,
    progress: Callable[[int], None] | None = None,
    chunk: int = 200,
) -> Backfilled:
    """Record fires for past ``times`` (idempotent: fires already recorded stay as they are).

    With ``queue`` they run one after another (released by the scheduler, oldest first);
    otherwise each starts at once.
    """
    lookup(application, name)
    max_attempts = application.policy(application.handlers[name]).max_attempts or 1
    status: records.FireStatus = "queued" if queue else "fired"
    created = 0
    executions: list[UUID] = []
    for i in range(0, len(times), chunk):
        part = times[i : i + chunk]
        inserted, made = await store.add_fires(
            name,
            [records.PlannedFire(t, "backfill", status) for t in part],
            max_attempts,
            now,
            application.schedules[name].flow,
        )
        created += len(inserted)
        executions.extend(made)
        if progress is not None:
            progress(len(part))
    return Backfilled(len(times), created, len(times) - created, tuple(executions))
