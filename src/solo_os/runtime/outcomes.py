"""Finished outcomes are never dropped: a write that meets an unavailable store is retried.

A worker whose handler has finished holds the only copy of the outcome. Dropping it (as
``execution.unrecorded`` once did) lets the lease run out and the handler run again: through a
PostgreSQL restart or failover of a few seconds, every attempt that ended in the gap ran twice.
Instead the worker keeps the outcome and retries the write, with backoff, until the store is
back. The execution stays in the worker's in-flight set meanwhile, so the heartbeat keeps
renewing its lease (and only the leases of what the worker still means to finish); only a
worker that dies loses its outcomes, and their leases run out as before.

An error that is not about availability (``StoreError`` other than ``StoreUnavailable``: a
statement the database refuses) is not retried: the same write would fail the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from solo_os import errors

FIRST_DELAY = 0.1
MAX_DELAY = 2.0


async def until_stored(write: Callable[[], Awaitable[None]], hlog: Any) -> None:
    """Call ``write`` until it does not raise ``StoreUnavailable``; other errors propagate.

    Cancellation (shutdown past its grace period) ends the retries: the outcome is then lost
    with the process, as if it had died, and the lease runs out.
    """
    delay = FIRST_DELAY
    since: float | None = None
    while True:
        try:
            await write()
        except errors.StoreUnavailable as exc:
            if since is None:
                since = time.monotonic()
                hlog.warning("execution.outcome_held", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
            continue
        if since is not None:
            hlog.info("execution.outcome_written", held_seconds=round(time.monotonic() - since, 3))
        return
