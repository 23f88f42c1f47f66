"""Handler timeouts on one timer (``runtime/deadlines.py``, issue 21): the same outcomes as
``asyncio.timeout`` (a ``TimeoutError`` at the deadline, never before it and at most a tick
after; a cancellation from elsewhere stays a cancellation), with a shorter deadline added after
a longer one still firing first, and nothing left watched once the executions have ended."""

from __future__ import annotations

import asyncio

import pytest

from solo_os.runtime import deadlines

SLACK = 0.25  # a loaded 2-core CI machine


async def _sleeper(d: deadlines.Deadlines, limit: float | None, sleep: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        with d.limit(limit):
            await asyncio.sleep(sleep)
    except TimeoutError:
        return loop.time() - start
    return -1.0


async def test_times_out_at_the_deadline_and_not_before() -> None:
    d = deadlines.Deadlines()
    long, short, free, none = await asyncio.gather(
        _sleeper(d, 0.3, 5), _sleeper(d, 0.1, 5), _sleeper(d, 0.3, 0.01), _sleeper(d, None, 0.05)
    )
    assert await _sleeper(d, float("inf"), 0.01) == -1.0  # timeout=inf (allowed): no limit
    assert 0.3 <= long < 0.3 + deadlines.TICK + SLACK
    assert 0.1 <= short < 0.1 + deadlines.TICK + SLACK  # added after the longer one: fires first
    assert free == -1.0 and none == -1.0  # ended in time, or no limit: no TimeoutError
    assert d.pending() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    d = deadlines.Deadlines()
    task = asyncio.create_task(_sleeper(d, 5, 5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert d.pending() == 0


async def test_a_handler_that_swallows_the_cancel_keeps_its_result() -> None:
    d = deadlines.Deadlines()

    async def stubborn() -> str:
        with d.limit(0.05):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                return "kept"
        return "not reached"

    task = asyncio.create_task(stubborn())
    assert await task == "kept"
    assert task.cancelling() == 0  # our cancel was taken back, as asyncio.timeout does


async def test_many_executions_in_a_row_leave_nothing_behind() -> None:
    d = deadlines.Deadlines()
    for _ in range(200):
        assert await _sleeper(d, 30, 0) == -1.0
    assert d.pending() == 0
    assert await _sleeper(d, 0.05, 5) >= 0.05  # the timer still fires after all of them
