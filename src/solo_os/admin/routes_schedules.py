"""``/api/schedules``: list and show cron schedules; trigger, pause and resume them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import Path, Query

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.admin import models
from solo_os.admin._shared import CONFLICT, NOT_FOUND, Admin, AdminDep, ApiError, new_router
from solo_os.ops import schedules as schedules_ops

log = structlog.get_logger("solo_os.admin")
router = new_router()
ScheduleName = Annotated[str, Path(max_length=255, description="the schedule's name")]


def _schedule(a: Admin, name: str) -> app_mod.Schedule:
    found = a.app.schedules.get(name)
    if found is None:
        raise ApiError(404, "not_found", f"no schedule named {name!r} in this app")
    return found


def _schedule_out(status: schedules_ops.Status, now: datetime) -> models.ScheduleOut:
    sched, info = status.schedule, status.info
    return models.ScheduleOut(
        name=sched.name,
        expression=sched.expression,
        timezone=sched.timezone,
        overlap=sched.overlap,
        catchup=sched.catchup,
        paused=info.paused,
        paused_at=info.paused_at,
        next_fire=None if info.paused else sched.cron.next_after(now),
        last_fire_at=info.last_fire_at,
        last_kind=info.last_kind,
        last_result=status.last_result,
        last_execution_id=info.last_execution_id,
        failures=info.failures,
        queued=info.queued,
    )


@router.get("/schedules", response_model=list[models.ScheduleOut], tags=["schedules"])
async def list_schedules(a: AdminDep) -> list[models.ScheduleOut]:
    """Every ``@app.cron`` schedule: next fire, last fire and its result, failures, pause."""
    found = await schedules_ops.status(a.app, a.store(), sorted(a.app.schedules))
    now = store_mod.utcnow()
    return [_schedule_out(s, now) for s in found]


@router.get(
    "/schedules/{name}",
    response_model=models.ScheduleDetail,
    responses=NOT_FOUND,
    tags=["schedules"],
)
async def get_schedule(
    a: AdminDep,
    name: ScheduleName,
    limit: Annotated[int, Query(ge=1, le=models.MAX_PAGE, description="fires shown")] = 50,
) -> models.ScheduleDetail:
    """One schedule with its newest fires (history) and their executions' state."""
    _schedule(a, name)
    store = a.store()
    [status] = await schedules_ops.status(a.app, store, [name])
    fires = await store.recent_fires(name, limit)
    return models.ScheduleDetail(
        **_schedule_out(status, store_mod.utcnow()).model_dump(),
        fires=[models.FireOut(**asdict(f)) for f in fires],
    )


@router.post(
    "/schedules/{name}/trigger",
    response_model=models.TriggeredOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["schedules"],
)
async def trigger_schedule(a: AdminDep, name: ScheduleName) -> models.TriggeredOut:
    """Run a schedule now: one fire at the current time, marked manual (even when paused)."""
    _schedule(a, name)
    try:
        xid = await schedules_ops.trigger(a.app, a.store(), name, store_mod.utcnow())
    except errors.StoreUnavailable:
        raise
    except errors.StoreError as exc:  # a fire at this very instant exists already
        raise ApiError(409, "conflict", str(exc)) from None
    log.info("schedule.triggered", schedule=name, execution_id=str(xid))
    return models.TriggeredOut(schedule=name, execution_id=xid)


async def _set_paused(a: Admin, name: str, paused: bool) -> models.PausedOut:
    _schedule(a, name)
    changed = await schedules_ops.set_paused(a.app, a.store(), name, paused, store_mod.utcnow())
    if changed:
        log.info("schedule.paused" if paused else "schedule.resumed", schedule=name)
    return models.PausedOut(schedule=name, paused=paused, changed=changed)


@router.post(
    "/schedules/{name}/pause",
    response_model=models.PausedOut,
    responses=NOT_FOUND,
    tags=["schedules"],
)
async def pause_schedule(a: AdminDep, name: ScheduleName) -> models.PausedOut:
    """Stop firing a schedule, on every scheduler (kept in the database)."""
    return await _set_paused(a, name, True)


@router.post(
    "/schedules/{name}/resume",
    response_model=models.PausedOut,
    responses=NOT_FOUND,
    tags=["schedules"],
)
async def resume_schedule(a: AdminDep, name: ScheduleName) -> models.PausedOut:
    """Fire a paused schedule again from now on (the paused time is not caught up)."""
    return await _set_paused(a, name, False)
