"""The daily prune: runs ``Store.prune_exclusive`` once a day in a worker process.

``SOLO_OS_RETENTION_DAYS`` sets the age; what is pruned, and how, is ``store/_retention.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from solo_os import errors

if TYPE_CHECKING:
    from solo_os.store.ports import RetentionPort

log = structlog.get_logger("solo_os.retention")  # the logger name predates this module: kept
DAY = 86_400.0
FIRST_RUN_DELAY = 300.0  # seconds after start (jittered) before the first automatic prune


class Pruner:
    """Prunes once a day in the background of a worker process (``SOLO_OS_RETENTION_DAYS``)."""

    def __init__(
        self,
        store: RetentionPort,
        retention: timedelta,
        *,
        interval: float = DAY,
        first_delay: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.interval = interval
        self._rng = rng or random.Random()
        base = FIRST_RUN_DELAY if first_delay is None else first_delay
        # Jitter: replicas started together do not all reach for the lock at once.
        self.first_delay = base * (0.5 + self._rng.random())
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.first_delay
        while not await _stopped(stop, delay):
            delay = self.interval
            try:
                result = await self.store.prune_exclusive(self.retention)
            except errors.StoreError as exc:
                log.warning("retention.failed", error=str(exc))
                delay = min(self.interval, 600.0)  # try again soon, not tomorrow
                continue
            self.runs += 1
            if result is None:
                log.info("retention.skipped", reason="another process is pruning")
            else:
                log.info(
                    "retention.pruned",
                    executions=result.executions,
                    events=result.events,
                    older_than_days=round(self.retention.total_seconds() / DAY, 3),
                )


async def _stopped(stop: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds; True when ``stop`` was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
    return stop.is_set()
