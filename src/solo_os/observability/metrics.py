"""Prometheus metrics: per-process counters and histograms, cached gauges read from the store.

Names follow the Prometheus conventions: ``_total`` counters, ``_seconds`` histograms, one
thing counted per metric. An *attempt* is one run of a handler; an *execution* is the unit of
work that retries through attempts until it succeeds or goes dead. Figures that must be right
across many processes (the queue depth, the alert outbox) come from the store, at most once
per ``SOLO_OS_METRICS_REFRESH_SECONDS`` per process however often Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import importlib.metadata
import platform
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

from solo_os import errors

# The ``_created`` series (one per labelled child) double the series count for no use here.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

registry = CollectorRegistry(auto_describe=True)

# Up to the default handler timeout (300 s): a slow handler lands in a bucket, not in +Inf.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Execution statuses that are finished; every other status is work still queued or running.
FINISHED_STATUSES = frozenset({"succeeded", "dead", "cancelled", "skipped"})

deliveries = Counter(
    "solo_os_deliveries_total",
    "Webhook deliveries by source and outcome",
    ["source", "outcome"],
    registry=registry,
)
attempts = Counter(
    "solo_os_attempts_total",
    "Finished attempts (one run of a handler) by handler and outcome",
    ["handler", "outcome"],
    registry=registry,
)
executions_finished = Counter(
    "solo_os_executions_finished_total",
    "Executions that reached a final status (succeeded, dead) in this process",
    ["handler", "status"],
    registry=registry,
)
attempt_seconds = Histogram(
    "solo_os_attempt_duration_seconds",
    "How long one attempt of a handler ran",
    ["handler"],
    buckets=DURATION_BUCKETS,
    registry=registry,
)
receive_to_start = Histogram(
    "solo_os_receive_to_start_seconds",
    "From the delivery's arrival to its handler's first start",
    buckets=WAIT_BUCKETS,
    registry=registry,
)
cron_lag = Histogram(
    "solo_os_cron_lag_seconds",
    "From a fire's scheduled time to its execution being created",
    ["schedule"],
    buckets=WAIT_BUCKETS,
    registry=registry,
)
alert_outbox = Gauge(
    "solo_os_alert_outbox",
    "Alert deliveries not sent yet, by status (from the store)",
    ["status"],
    registry=registry,
)
queue_depth = Gauge(
    "solo_os_queue_depth",
    "Executions not finished yet (pending, running), by status (from the store)",
    ["status"],
    registry=registry,
)
waiting = Gauge(
    "solo_os_waiting_executions",
    "Pending executions held back, by reason: concurrency, throttle, debounce, batch, run_after "
    "(from the store)",
    ["reason"],
    registry=registry,
)
store_up = Gauge(
    "solo_os_store_up",
    "1 when the last read of the store's figures for these metrics succeeded, else 0",
    registry=registry,
)
store_refresh_age = Gauge(
    "solo_os_store_gauges_age_seconds",
    "Age of the store-backed gauges (queue depth, alert outbox) at this scrape",
    registry=registry,
)
# Queue-fed sources (runtime/consumer.py); their messages are counted in deliveries too.
consumer_acks = Counter(
    "solo_os_consumer_acks_total",
    "Queue messages acknowledged to their broker after their events were committed, by source",
    ["source"],
    registry=registry,
)
consumer_paused = Gauge(
    "solo_os_consumer_paused",
    "1 while a queue consumer does not pull, by source and reason (backpressure, store, broker)",
    ["source", "reason"],
    registry=registry,
)
consumer_batch_seconds = Histogram(
    "solo_os_consumer_batch_seconds",
    "From a batch of queue messages received to acknowledged (stored in one transaction)",
    ["source"],
    buckets=DURATION_BUCKETS,
    registry=registry,
)
build_info = Gauge(
    "solo_os_build_info",
    "Always 1; the labels say which solo-os and Python this process runs",
    ["version", "python_version", "python_implementation"],
    registry=registry,
)


def _version() -> str:
    try:
        return importlib.metadata.version("solo-os")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


build_info.labels(_version(), platform.python_version(), platform.python_implementation()).set(1)


def attempt_finished(handler: str, outcome: str, status: str | None) -> None:
    """Count one attempt; ``status`` is the execution's final status when this attempt ended it."""
    _child(attempts, handler, outcome).inc()
    if status in FINISHED_STATUSES:
        _child(executions_finished, handler, status).inc()


def attempt_duration(handler: str, seconds: float) -> None:
    """Observe one attempt's duration (``solo_os_attempt_duration_seconds``)."""
    _child(attempt_seconds, handler).observe(seconds)


@functools.lru_cache(maxsize=4096)
def _child(metric: Any, *labels: str) -> Any:
    """A labelled child, looked up once: ``labels()`` validates and locks on every call (a few
    microseconds per execution), and nothing here ever removes a child."""
    return metric.labels(*labels)


class FigureSource(Protocol):
    """What the store gives these metrics (``Store.counts`` and ``Store.outbox_counts``)."""

    async def counts(self) -> dict[str, int]: ...

    async def outbox_counts(self) -> dict[str, int]: ...

    async def waiting_counts(self, now: datetime) -> dict[str, int]: ...


class StoreGauges:
    """The store-backed gauges, refreshed at most once per ``interval`` however often scraped.

    Concurrent scrapes of a stale cache wait for one refresh instead of each querying the
    store. A failed read keeps the last figures, sets ``solo_os_store_up`` to 0 and is not
    retried before the interval is over either, so a struggling database is not hammered.
    """

    def __init__(self, interval: float, clock: Callable[[], datetime]) -> None:
        self.interval = timedelta(seconds=interval)
        self.clock = clock
        self.refreshes = 0  # store reads done (what the scrape-cost test counts)
        self._at: datetime | None = None
        self._lock: asyncio.Lock | None = None

    def _fresh(self, now: datetime) -> bool:
        # A clock that went backwards (a test clock set anew, a wall-clock step) means stale.
        return self._at is not None and self._at <= now < self._at + self.interval

    async def ensure_fresh(self, store: Callable[[], FigureSource]) -> None:
        if self._fresh(self.clock()):
            self._report_age()
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh(self.clock()):  # another scrape may have refreshed meanwhile
                await self.refresh(store)
        self._report_age()

    async def refresh(self, store: Callable[[], FigureSource]) -> None:
        self.refreshes += 1
        try:
            source = store()
            counts = await source.counts()
            outbox = await source.outbox_counts()
            held = await source.waiting_counts(self.clock())
        except errors.StoreError:
            store_up.set(0)
        else:
            for status, n in counts.items():
                if status not in FINISHED_STATUSES:
                    queue_depth.labels(status).set(n)
            for status, n in outbox.items():
                alert_outbox.labels(status).set(n)
            for reason, n in held.items():
                waiting.labels(reason).set(n)
            store_up.set(1)
        self._at = self.clock()

    def _report_age(self) -> None:
        if self._at is not None:
            store_refresh_age.set(max(0.0, (self.clock() - self._at).total_seconds()))


def authorized(authorization: str | None, token: str | None) -> bool:
    """True when no token is required, or ``authorization`` is ``Bearer <token>``."""
    if token is None:
        return True
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Compare digests: equal lengths, so not even the token's length leaks.
    given = hashlib.sha256(value.strip().encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(given, hashlib.sha256(token.encode("utf-8")).digest())


async def scrape(
    gauges: StoreGauges,
    store: Callable[[], FigureSource],
    headers: Mapping[str, str],
    token: str | None,
) -> tuple[int, bytes, dict[str, str]]:
    """One ``GET /metrics``: status, body and headers (shared by both places it is served)."""
    if not authorized(headers.get("authorization"), token):
        return (
            401,
            b'{"error":"unauthorized","message":"a valid admin token is required"}',
            {"content-type": "application/json", "www-authenticate": 'Bearer realm="solo-os"'},
        )
    await gauges.ensure_fresh(store)
    return 200, prometheus_client.generate_latest(registry), {"content-type": CONTENT_TYPE_LATEST}


def asgi_app(
    gauges: StoreGauges, store: Callable[[], FigureSource], token: str | None
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """A minimal ASGI app that answers ``GET /metrics`` (for ``SOLO_OS_METRICS_PORT``)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, headers = 404, b'{"error":"not_found"}', {"content-type": "application/json"}
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, headers = (
                405,
                b'{"error":"method_not_allowed"}',
                {"content-type": "application/json", "allow": "GET, HEAD"},
            )
        else:
            given = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            status, body, headers = await scrape(gauges, store, given, token)
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app
