"""SQLite writers' turns across processes (``store/_sqlite_lock.py``): a waiter is let in the
moment the holder lets go, a wait past the timeout goes ahead (SQLite's own lock still keeps
writers apart), and a cancelled waiter leaves the lock free. Two ``WriterLock`` objects open
the lock file apart, so ``flock`` treats them as two processes."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

from solo_os.store._sqlite_lock import WriterLock


def _free(folder: Path) -> bool:
    """Whether a third party could take the lock now."""
    fd = os.open(folder / "writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


async def test_a_waiter_goes_in_when_the_holder_lets_go(tmp_path: Path) -> None:
    a, b = WriterLock(tmp_path / "w", 10), WriterLock(tmp_path / "w", 10)
    order: list[str] = []
    released = 0.0

    async def hold() -> None:
        nonlocal released
        async with a.turn():
            order.append("a in")
            await asyncio.sleep(0.3)
            order.append("a out")
            released = time.monotonic()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.05)
    async with b.turn():
        order.append("b in")
        waited_after = time.monotonic() - released
        assert not _free(tmp_path / "w")
    await holder
    assert order == ["a in", "a out", "b in"]
    assert waited_after < 0.05  # woken, not polling
    assert _free(tmp_path / "w")
    a.close()
    b.close()


async def test_a_wait_past_the_timeout_goes_ahead_and_a_cancelled_one_leaves_it_free(
    tmp_path: Path,
) -> None:
    a, b = WriterLock(tmp_path / "w", 10), WriterLock(tmp_path / "w", 0.2)
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def hold() -> None:
        async with a.turn():
            entered.set()
            await leave.wait()

    holder = asyncio.create_task(hold())
    await entered.wait()
    t0 = time.monotonic()
    async with b.turn():  # a still holds it: b goes ahead after its timeout
        assert 0.15 < time.monotonic() - t0 < 2
    waiter = asyncio.create_task(_enter(b))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    leave.set()
    await holder
    # b's threads got the lock after a let go (the timed-out wait, the cancelled one): each
    # lets it go again.
    deadline = time.monotonic() + 2
    while not _free(tmp_path / "w") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert _free(tmp_path / "w")
    a.close()
    b.close()


async def _enter(lock: WriterLock) -> None:
    async with lock.turn():
        pass


async def test_in_one_process_a_waiting_ingest_or_claim_goes_before_waiting_outcomes(
    tmp_path: Path,
) -> None:
    lock = WriterLock(tmp_path / "w", 10)
    order: list[str] = []

    async def write(name: str, background: bool) -> None:
        async with lock.turn(background):
            order.append(name)
            await asyncio.sleep(0.02)

    first = asyncio.create_task(write("first", False))
    await asyncio.sleep(0.005)
    later = [asyncio.create_task(write("outcomes", True))]
    await asyncio.sleep(0.001)
    later += [asyncio.create_task(write("claim", False)), asyncio.create_task(write("ingest", False))]
    await asyncio.gather(first, *later)
    assert order == ["first", "claim", "ingest", "outcomes"]
    cancelled = asyncio.create_task(write("cancelled", True))
    holder = asyncio.create_task(write("holder", False))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(holder, cancelled, return_exceptions=True)
    await asyncio.wait_for(write("after", False), 1)  # nothing left holding it
    lock.close()
