"""uvicorn, guarded against slow and too many clients (``run``, ``serve``, the metrics port).

uvicorn closes idle keep-alive connections but has no timeout for a request that arrives
slowly: a client that sends its head one byte a second holds a connection (and a file
descriptor) for as long as it likes, and enough of them stop every other client. This protocol
adds what a reverse proxy would:

- the request head (request line and headers) must arrive within ``SOLO_OS_HEADER_TIMEOUT``
  seconds of the connection opening, or of the first byte of a later request on a kept-alive
  connection; otherwise the connection is answered ``408`` and closed;
- the body must arrive within ``SOLO_OS_BODY_TIMEOUT`` seconds of the head; otherwise the
  connection is closed (the handler sees a disconnect, nothing is stored);
- at most ``SOLO_OS_MAX_CONNECTIONS`` connections are open at once; one more is answered
  ``503`` and closed at once, before it can hold anything.

Closed connections are counted and logged at warning level, at most once per
``LOG_EVERY_SECONDS`` (a flood of slow clients does not flood the log).
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any, ClassVar

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from solo_os import config
from solo_os.runtime import worker as worker_mod

log = structlog.get_logger("solo_os.server")
LOG_EVERY_SECONDS = 10.0

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_FULL_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 5\r\n"
    b"content-length: 0\r\n\r\n"
)


class _Closures:
    """Counts of connections closed by the guard, logged in summary now and then."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self._logged = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.total[reason] = self.total.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_SECONDS:
            self._logged = now
            log.warning("http.connections_closed", **self.counts)
            self.counts = {}


closures = _Closures()


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines and a connection cap."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0
    max_connections: ClassVar[int] = 2048

    # One timer per connection, moved only when a deadline comes earlier than it: a phase that
    # ends just clears ``_due``, and a timer that fires before the current phase's deadline is
    # set again for it. A request on a kept-alive connection then costs no timer of its own
    # (each used to make and cancel two), and every deadline is kept exactly as before.
    _deadline: asyncio.TimerHandle | None = None  # the armed timer
    _due: float | None = None  # when the current phase must be over (loop time), or None
    _reason = ""  # what passing ``_due`` means: header_timeout or body_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            closures.add("over_limit")
            transport.write(_FULL_503)
            transport.close()
            return
        self._arm(self.header_timeout, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._due is None:  # a later request on a kept-alive connection
            self._arm(self.header_timeout, "header_timeout")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.body_timeout, "body_timeout")  # (an upgraded connection has no body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, reason: str) -> None:
        due = self.loop.time() + seconds
        self._due, self._reason = due, reason
        timer = self._deadline
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._deadline = self.loop.call_at(due, self._check)

    def _disarm(self) -> None:
        self._due = None  # the timer stays: when it fires with nothing due, it lapses

    def _check(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return
        if due > self.loop.time() + 0.001:  # a later phase's deadline: wait for it (1 ms: the
            self._deadline = self.loop.call_at(due, self._check)  # event loop's resolution)
            return
        self._expired(self._reason)

    def _expired(self, reason: str) -> None:
        self._due = None
        if self.transport.is_closing():
            return
        closures.add(reason)
        if reason == "header_timeout":
            self.transport.write(_TIMEOUT_408)  # no request has started: nothing else was sent
        self.transport.close()


def protocol_for(settings: config.Settings) -> type[GuardedHttpTools]:
    """The guarded protocol class with ``settings``' limits."""
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {
            "header_timeout": settings.header_timeout,
            "body_timeout": settings.body_timeout,
            "max_connections": settings.max_connections,
        },
    )


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files toward ``wanted`` (up to the hard limit),
    so the connection cap, not the default 1,024 descriptors, is what refuses clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def uvicorn_config(app: Any, settings: config.Settings, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings ``run`` and ``serve`` use."""
    # Room for the connections plus the store's pools, log files and the rest.
    raise_open_files_limit(settings.max_connections + 256)
    margin = worker_mod.shutdown_margin(settings.shutdown_grace_seconds)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(settings),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        # Open requests get most of the grace period; the process ends within all of it.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds - margin)),
    )
