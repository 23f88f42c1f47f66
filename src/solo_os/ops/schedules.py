"""Cron schedules by hand: status, trigger, pause and resume, backfill.

The fire-recording core (``trigger``, ``backfill``, ``backfill_times``, ``lookup``) lives
with the scheduler in ``runtime/scheduler.py``; these are the operator's use cases on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.runtime import scheduler as scheduler_mod
from solo_os.store import _schedules as schedules_store
from solo_os.store import ports

Backfilled = scheduler_mod.Backfilled
lookup = scheduler_mod.lookup


@dataclass(frozen=True)
class Status:
    """A declared schedule with its stored state."""

    schedule: app_mod.Schedule
    info: schedules_store.ScheduleInfo

    @property
    def last_result(self) -> str | None:
        """The last fire's outcome: its execution's status, or skipped/queued/missed."""
        info = self.info
        if info.last_status is None:
            return None
        if info.last_status != "fired":
            return str(info.last_status)
        return str(info.last_result or "purged")  # a fire whose execution was purged


async def status(application: app_mod.App, store: ports.SchedulePort, names: list[str]) -> list[Status]:
    """The state of the schedules ``names`` (declared ones), in that order."""
    infos = await store.schedule_info(names)
    return [Status(application.schedules[n], infos[n]) for n in names]


async def trigger(application: app_mod.App, store: store_mod.Store, name: str, now: datetime) -> UUID:
    """Run ``name`` now: one fire marked ``manual`` (even when paused); its execution's id."""
    return await scheduler_mod.trigger(application, store, name, now)


async def set_paused(
    application: app_mod.App, store: ports.SchedulePort, name: str, paused: bool, now: datetime
) -> bool:
    """Pause or resume ``name`` on every scheduler; whether it changed."""
    lookup(application, name)
    return await store.set_paused(name, paused, now)


@dataclass(frozen=True)
class Window:
    """The fire times of a backfill, checked: a past window only."""

    schedule: app_mod.Schedule
    start: datetime
    end: datetime
    times: list[datetime]


def plan_backfill(schedule: app_mod.Schedule, start: datetime, end: datetime, now: datetime) -> Window:
    if end < start:
        raise errors.ConfigError("--to is before --from")
    if end > now:
        raise errors.ConfigError("--to is in the future: backfill runs past windows only")
    return Window(schedule, start, end, scheduler_mod.backfill_times(schedule, start, end))


async def backfill(
    application: app_mod.App,
    store: store_mod.Store,
    window: Window,
    *,
    now: datetime,
    parallel: bool,
    progress: Callable[[int], None] | None = None,
) -> scheduler_mod.Backfilled:
    """Record the window's fires (those recorded already stay); one after another unless
    ``parallel`` or the schedule's overlap is ``allow``."""
    queue = not parallel and window.schedule.overlap != "allow"
    return await scheduler_mod.backfill(
        application, store, window.schedule.name, window.times, now=now, queue=queue, progress=progress
    )
