"""The rate-limit gate of ``ctx.http``: the callers of one key in one process share one pump.

A call to a rate-limited key first takes a token from the key's bucket in the store, shared by
every process. Concurrent callers in one process wait on the key's ``Gate``, and the gate takes
tokens for all of them in one store round trip, so the store sees one transaction per batch
of calls, not one per call. A token is never held back for later: tokens are taken only for
callers that are waiting now, so the declared rate holds across processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from solo_os import errors
from solo_os.core import ratelimit


class Buckets(Protocol):
    """The store's side of rate limits (``store.Store`` implements it)."""

    async def take_tokens(
        self, key: str, want: int, rate: float, capacity: float
    ) -> ratelimit.Grant: ...

    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime: ...


@dataclass
class _Waiter:
    future: asyncio.Future[None]
    deadline: float  # loop time


class Gate:
    """The callers of one key in this process: one pump takes tokens for all of them.

    The pump asks the store for as many tokens as callers wait, hands them out in arrival
    order, and when short sleeps until the next token can be free (the store says when), so
    a starved key costs one store round trip per refill, not one per caller. A caller that
    could not be served by its deadline even if every coming token were its own is failed at
    once with ``RateLimited``.
    """

    def __init__(self, limit: ratelimit.Limit, buckets: Buckets) -> None:
        self.limit = limit
        self._buckets = buckets
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._pump: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._next_free = 0.0  # loop time before which the store has no token for us

    async def acquire(self, deadline: float) -> None:
        """Return once a token is ours; raise ``RateLimited`` if none can be by ``deadline``."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), deadline)
        self._waiters.append(waiter)
        self._arrived.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name=f"solo-os-ratelimit-{self.limit.key}")
        await waiter.future

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(errors.RateLimited(1.0, self.limit.key))
        self._waiters.clear()

    def _live(self) -> list[_Waiter]:
        live = [w for w in self._waiters if not w.future.done()]
        self._waiters = collections.deque(live)
        return live

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        rate, capacity, key = self.limit.per_second, self.limit.capacity, self.limit.key
        while live := self._live():
            if loop.time() >= self._next_free:
                try:
                    grant = await self._buckets.take_tokens(key, len(live), rate, capacity)
                except Exception as exc:
                    # Tokens exist only in the store: without it, nobody may call.
                    self._fail_all(exc)
                    return
                given = 0
                while given < grant.granted and self._waiters:
                    w = self._waiters.popleft()
                    if w.future.done():
                        continue  # cancelled meanwhile; its token is spent (errs on the safe side)
                    w.future.set_result(None)
                    given += 1
                if grant.granted >= len(live):
                    continue  # everyone served; newcomers (if any) are asked for at once
                self._next_free = loop.time() + grant.wait
            now = loop.time()
            ahead = max(0.0, self._next_free - now)
            for position, w in enumerate(self._live()):
                best = ahead + position / rate
                if now + best > w.deadline:
                    w.future.set_exception(errors.RateLimited(max(best, 0.001), key))
            if not self._live():
                return
            # Sleep until a token may be free, or until a newcomer needs its deadline judged.
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.001, self._next_free - loop.time()))

    def _fail_all(self, exc: Exception) -> None:
        for w in self._live():
            # One exception object per caller: a shared one would collect every traceback.
            cls = type(exc) if isinstance(exc, errors.StoreError) else errors.StoreError
            error = cls(f"rate limit {self.limit.key!r}: {exc}")
            error.__cause__ = exc
            w.future.set_exception(error)
        self._waiters.clear()
