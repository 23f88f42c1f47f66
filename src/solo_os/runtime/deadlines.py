"""Handler timeouts for a worker's many executions, on one timer.

``asyncio.timeout`` arms a timer per execution (a libuv timer under uvloop) and costs about
4 µs per no-op execution, most of a handler's timeout never firing. Here deadlines are kept in
buckets of ``TICK`` seconds (a set per bucket: an execution that ends leaves its bucket in O(1)),
and one timer is armed for the earliest bucket. When it fires, every execution still in a bucket
whose time has come is cancelled, and turned into ``TimeoutError`` exactly as
``asyncio.timeout`` does (the task's cancel count decides, so a cancellation from elsewhere,
e.g. the shutdown, stays a cancellation). A deadline fires at its time or up to ``TICK``
later, never earlier.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from types import TracebackType

TICK = 0.01


class Deadlines:
    def __init__(self) -> None:
        self._buckets: dict[int, set[Limit]] = {}
        self._keys: list[int] = []  # a heap of the buckets' keys
        self._timer: asyncio.TimerHandle | None = None
        self._armed: int | None = None  # the bucket the timer is armed for

    def limit(self, seconds: float | None) -> Limit:
        """A context manager: the current task, within it, gets ``seconds`` (None: no limit)."""
        return Limit(self, seconds)

    def pending(self) -> int:
        """Executions whose deadline is being watched (for tests)."""
        return sum(len(b) for b in self._buckets.values())

    def _add(self, limit: Limit, seconds: float) -> int:
        loop = asyncio.get_running_loop()
        key = math.ceil((loop.time() + seconds) / TICK)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._keys, key)
            if self._armed is None or key < self._armed:
                self._arm(loop, key)
        bucket.add(limit)
        return key

    def _remove(self, limit: Limit, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(limit)  # an empty bucket goes when its time comes

    def _arm(self, loop: asyncio.AbstractEventLoop, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = key
        self._timer = loop.call_at(key * TICK, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = self._armed = None
        now = loop.time()
        while self._keys and self._keys[0] * TICK <= now:
            for limit in self._buckets.pop(heapq.heappop(self._keys), ()):
                limit.expire()
        if self._keys:
            self._arm(loop, self._keys[0])


class Limit:
    """One execution's deadline (``Deadlines.limit``)."""

    __slots__ = ("_cancelling", "_expired", "_key", "_owner", "_seconds", "_task")

    def __init__(self, owner: Deadlines, seconds: float | None) -> None:
        self._owner = owner
        self._seconds = seconds
        self._expired = False
        self._key: int | None = None

    def __enter__(self) -> Limit:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        if self._seconds is not None and self._seconds < math.inf:  # timeout=inf: none
            self._key = self._owner._add(self, self._seconds)
        return self

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._key is not None:
            self._owner._remove(self, self._key)
        # As asyncio.timeout: our cancel, and no other pending, becomes a TimeoutError.
        cancelled = exc_type is asyncio.CancelledError
        if self._expired and self._task.uncancel() <= self._cancelling and cancelled:
            raise TimeoutError from exc
