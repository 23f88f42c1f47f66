"""SchedulePort: one fire per (schedule, time) whoever records it; pause state for everyone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from solo_os.store._schedules import FirePlan, PlannedFire, ScheduleState
from solo_os.store.ports import ReadPort, SchedulePort
from solo_os.testing import Clock


class Ports(SchedulePort, ReadPort, Protocol):
    """What these tests use of the store."""


async def test_one_fire_per_time_across_concurrent_callers(store: Ports, other: Ports, clock: Clock) -> None:
    name = "nightly"
    await store.ensure_schedules([name], clock())
    due = [clock() + timedelta(minutes=i) for i in range(3)]
    seen: list[ScheduleState] = []

    def plan(state: ScheduleState) -> FirePlan:
        seen.append(state)
        return FirePlan(fires=tuple(PlannedFire(t, "scheduled", "fired") for t in due))

    manual = [PlannedFire(due[0], "manual", "fired")]
    results = await asyncio.gather(
        store.advance_schedule(name, clock(), plan),
        other.advance_schedule(name, clock(), plan),
        store.add_fires(name, manual, 1, clock()),
        other.add_fires(name, manual, 1, clock()),
    )
    fires = await store.list_fires(name)
    assert sorted(f.fire_at for f in fires) == due  # each time once
    executions = [f.execution_id for f in fires]
    assert None not in executions and len(set(executions)) == len(due)
    assert (await store.counts()).get("pending") == len(due)
    advanced = [r for r in results[:2] if r is not None]
    assert advanced and seen and all(s.name == name for s in seen)
    assert advanced[0].last_fire == due[-1]

    # a later pass that plans the same times again changes nothing
    again = await store.advance_schedule(name, clock.advance(1), plan)
    assert again is not None and again.inserted == () and again.executions == ()
    assert len(await store.list_fires(name)) == len(due)
    assert (await store.last_fires())[name] == due[-1]


async def test_pause_and_resume_are_seen_by_every_store(store: Ports, other: Ports, clock: Clock) -> None:
    assert await store.set_paused("hourly", True, clock())
    assert not await other.set_paused("hourly", True, clock())  # already paused
    info = await other.schedule_info(["hourly", "never-run"])
    assert info["hourly"].paused and info["hourly"].paused_at == clock()
    assert not info["never-run"].paused
    resumed_at = clock.advance(hours=1)
    assert await other.set_paused("hourly", False, resumed_at)
    state_seen: list[ScheduleState] = []

    def plan(state: ScheduleState) -> FirePlan:
        state_seen.append(state)
        return FirePlan()

    await store.advance_schedule("hourly", clock(), plan)
    [state] = state_seen
    assert not state.paused and state.active_since == resumed_at  # no catch-up of paused time


async def test_pruning_fires_keeps_open_ones_and_each_schedules_latest(store: Ports, clock: Clock) -> None:
    """The scheduler's hourly prune: settled fires older than the cut-off go; an open fire (its
    execution still pending) and each schedule's latest automatic fire stay, so the next pass
    neither fires an old time again nor loses what still runs."""
    start = clock()
    times = [start + timedelta(minutes=i) for i in range(4)]

    def plan(fires: list[PlannedFire]) -> Callable[[ScheduleState], FirePlan]:
        return lambda state: FirePlan(fires=tuple(fires))

    await store.ensure_schedules(["a", "b"], start)
    # "a": three skipped fires (settled at once) and its latest automatic fire, also skipped
    await store.advance_schedule("a", start, plan([PlannedFire(t, "scheduled", "skipped") for t in times]))
    # "b": one fire whose execution is pending (open), then a later skipped one
    await store.advance_schedule("b", start, plan([PlannedFire(times[0], "scheduled", "fired")]))
    await store.advance_schedule("b", start, plan([PlannedFire(times[1], "scheduled", "skipped")]))
    deleted = await store.prune_fires(start + timedelta(days=1))
    assert deleted == 3  # a's three oldest; b's open fire and both latest fires stay
    assert [f.fire_at for f in await store.list_fires("a")] == [times[-1]]
    assert [(f.fire_at, f.status) for f in await store.list_fires("b")] == [
        (times[0], "fired"),
        (times[1], "skipped"),
    ]
    assert (await store.last_fires())["a"] == times[-1]
    # nothing is older than the cut-off: nothing goes
    assert await store.prune_fires(start) == 0
