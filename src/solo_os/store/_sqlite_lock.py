"""Turns at SQLite's write lock between processes (``serve`` and ``worker`` apart): a file lock
taken before ``BEGIN IMMEDIATE``.

SQLite's own wait for its write lock (``busy_timeout``) polls: it sleeps 1, 2, 5, ... then
100 ms between tries, and nothing queues the waiters. Under steady writes from two processes
(serve's group commits, a worker's claims and outcomes) the polling one keeps missing the short
gaps between the other's transactions: at 500 deliveries/s a worker's claim waited up to 0.86 s
for the lock, and receive-to-start p99 was 1.1 s. A ``flock(2)`` waiter sleeps in the kernel and
is woken the moment the holder lets go, so the processes take turns.

It only schedules; SQLite's lock still keeps writers apart. So any trouble with the lock file
(no folder, another user's folder, a platform without ``fcntl``, a wait past the busy timeout)
falls back to SQLite's own wait, as before, and never to a wrong result. The blocking
``flock`` runs in a thread of its own; the lock file lives in the wake-up folder
(``_sqlite_wake.folder_for``), private to the user.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own wait only
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """One process's end: ``turn()`` around each writing transaction."""

    def __init__(self, folder: Path | None, timeout: float) -> None:
        self._path = folder / "writer.lock" if folder is not None and fcntl is not None else None
        self._timeout = timeout
        self._fd: int | None = None
        self._holding: int | None = None  # the fd while a turn holds its flock
        self._local: _Turns | None = None  # flock is per open file: one turn per process
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    def _open(self) -> int | None:
        if self._fd is None and self._path is not None:
            try:
                self._path.parent.mkdir(mode=0o700, exist_ok=True)
                if self._path.parent.stat().st_uid != os.getuid():
                    raise PermissionError(self._path.parent)
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._path = None  # SQLite's own wait from now on
        return self._fd

    @contextlib.asynccontextmanager
    async def turn(self, background: bool = False) -> AsyncIterator[None]:
        """Hold the file lock (when it can be had within the timeout) while inside. In this
        process a ``background`` turn (outcomes: nobody waits to start on them) goes after
        every other waiting one, which keeps the ingest and the claim on a short queue."""
        if self._local is None:
            self._local = _Turns()
        await self._local.acquire(background)
        try:
            self._holding = await self._acquire()
            try:
                yield
            finally:
                self.let_go()
        finally:
            self._local.release()

    def held(self) -> bool:
        """A turn of this process holds the file lock now (``_sqlite_driver.Turn``)."""
        return self._holding is not None

    def let_go(self) -> None:
        """Let the file lock go before the turn ends: its transaction has committed, and the
        rest of the turn writes nothing (``_sqlite_driver`` calls it after the ``COMMIT``)."""
        fd, self._holding = self._holding, None
        if fd is not None:
            _unlock(fd)

    async def _acquire(self) -> int | None:
        fd = self._open() if self._path is not None else None
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd  # free: no thread needed
        except BlockingIOError:
            pass
        except OSError:
            return None
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "solo-os-sqlite-lock")
        waiting = asyncio.get_running_loop().run_in_executor(self._thread, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), self._timeout)
            return fd
        except asyncio.CancelledError:
            _unlock_when_got(waiting, fd)
            raise
        except TimeoutError:  # the transaction goes ahead with SQLite's own wait
            _unlock_when_got(waiting, fd)
            return None
        except OSError:
            return None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
            self._thread = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class _Turns:
    """One holder at a time in this process, handed over in order: waiting foreground turns
    first, then background ones."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(), collections.deque()
        )

    async def acquire(self, background: bool) -> None:
        if not self._held and not any(self._waiting):
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        queue = self._waiting[background]
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over as we were cancelled: pass it on
            else:
                queue.remove(turn)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # handed over: still held
                    return
        self._held = False


def _unlock_when_got(waiting: asyncio.Future[None], fd: int) -> None:
    """Given up waiting: the thread may still get the lock; let it go then."""

    def got(f: asyncio.Future[None]) -> None:
        if not f.cancelled() and f.exception() is None:
            _unlock(fd)

    waiting.add_done_callback(got)


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
