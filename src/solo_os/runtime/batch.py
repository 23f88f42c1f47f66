"""Group commit: many concurrent callers, one transaction per batch.

Each caller awaits its own result while a writer task takes everything queued so far and
writes it in one call. Under light load a batch is a single item and nothing waits; under
load, items pile up while the previous transaction commits and the next one carries them all,
so the commit cost (an fsync on PostgreSQL and SQLite alike) is shared.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from solo_os import errors

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        writers: int = 1,
        key: Callable[[T], Hashable] | None = None,
        name: str = "batch",
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._writers = writers
        self._key = key
        self._name = name
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._deferred: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"solo-os-{self._name}-{i}")
                for i in range(self._writers)
            ]

    async def submit(self, item: T) -> R:
        if not self._tasks:
            raise errors.SoloOSError(f"{self._name} writer is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def close(self) -> None:
        """Write what is queued, then stop the writers."""
        while (not self._queue.empty() or self._deferred) and self._tasks:  # noqa: ASYNC110
            await asyncio.sleep(0.005)  # drained by the writer tasks; a short poll is enough here
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        gone = errors.StoreUnavailable(f"{self._name} writer stopped")
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(gone)

    async def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        if not self._deferred:
            self._deferred.append(await self._queue.get())
        batch: list[tuple[T, asyncio.Future[R]]] = []
        seen: set[Hashable] = set()
        later: list[tuple[T, asyncio.Future[R]]] = []
        sources: list[collections.deque[tuple[T, asyncio.Future[R]]] | None] = [self._deferred, None]
        for src in sources:
            while len(batch) < self._max_batch:
                if src is not None:
                    if not src:
                        break
                    entry = src.popleft()
                else:
                    try:
                        entry = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if entry[1].done():  # the caller went away (cancelled)
                    continue
                if self._key is not None:
                    k = self._key(entry[0])
                    if k in seen:
                        later.append(entry)  # same key twice: settle it in the next batch
                        continue
                    seen.add(k)
                batch.append(entry)
        self._deferred.extend(later)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except errors.StoreError as exc:
            if len(batch) > 1 and not isinstance(exc, errors.StoreUnavailable):
                # One bad item must not fail its neighbours: write them one by one.
                for entry in batch:
                    await self._flush([entry])
                return
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except Exception as exc:  # a bug: surface it to every caller, keep the writer alive
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
