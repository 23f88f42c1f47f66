"""A process waits for its database at start instead of exiting (and crash-looping under a
supervisor) when PostgreSQL refuses it: too many clients, down, starting up.

It tries every few seconds for ``SOLO_OS_DB_CONNECT_TIMEOUT`` (one log line per failed attempt,
saying why, never the URL's credentials), then gives up with ``StoreUnreachable`` (the CLI
exits 4 with one line). Errors that waiting cannot cure (a wrong password, no such database)
are raised at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from solo_os import errors
from solo_os.store import _pool

log = structlog.get_logger("solo_os.runtime")
FIRST_DELAY = 0.5
MAX_DELAY = 5.0  # so a freed slot is used within this long


async def wait_for_store(
    ping: Callable[[], Awaitable[None]],
    *,
    timeout: float,
    where: str,
    stop: asyncio.Event,
    waiting: Callable[[], None] | None = None,
) -> bool:
    """Call ``ping`` until it succeeds (True), ``stop`` is set (False) or ``timeout`` seconds
    have passed (``StoreUnreachable``). ``waiting`` is called once, after the first failure."""
    started = time.monotonic()
    delay = FIRST_DELAY
    attempt = 0
    while True:
        attempt += 1
        try:
            await ping()
        except errors.StoreUnavailable as exc:
            why = _pool.reason(exc)
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise errors.StoreUnreachable(_give_up(why, where, timeout, attempt)) from None
            pause = min(delay, left)
            log.warning(
                "store.connect_failed", attempt=attempt, reason=why, database=where,
                retry_in=round(pause, 1), gives_up_in=round(left, 1),
            )
            if attempt == 1 and waiting is not None:
                waiting()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if stop.is_set():
                return False
            delay = min(delay * 2, MAX_DELAY)
            continue
        if attempt > 1:
            log.info("store.connected", attempts=attempt, database=where,
                     waited_s=round(time.monotonic() - started, 1))
        return True


def where(database_url: str) -> str:
    """The database named for messages: host, port and name for PostgreSQL, no credentials."""
    if database_url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite":
        return "the SQLite database"
    return _pool.location(database_url)


def _give_up(why: str, where: str, timeout: float, attempts: int) -> str:
    advice = "SOLO_OS_DB_CONNECT_TIMEOUT sets how long to keep trying"
    if why.startswith("too many clients"):
        advice = (
            "each solo-os process opens up to SOLO_OS_DB_POOL_SIZE + SOLO_OS_DB_ADMIN_POOL_SIZE + 1 "
            "connections (15 by default): lower them, raise max_connections or put PgBouncer in "
            f"front (docs/how-to/scaling-out.md); {advice}"
        )
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return f"cannot connect to {where} within {timeout:g} s ({tries}): {why}; {advice}"
