"""The ``consume`` role: queue-fed sources into the same durable, deduplicated pipeline.

One loop per queue-fed source (``sources/queue.py``) reads its broker (``runtime/brokers/``)
in batches. Each message becomes an event exactly as a webhook delivery does
(``ingress.build_event``: decoded, typed, keyed, validated, ``rejected`` with its errors when
it is not JSON or fails the schema), the batch is stored in one transaction through the same
``store.ingest`` (the same unique constraint on (source, key): a redelivered message is a
duplicate), and only then is the batch acknowledged to the broker.

- A crash before the commit: nothing was acknowledged, the broker delivers again.
- A crash between commit and acknowledgement: the redelivery meets the stored event (duplicate).
- A store outage: the batch in hand is retried with backoff until it commits; nothing more is
  pulled and nothing is acknowledged meanwhile; consuming resumes by itself.
- A broker outage: the loop reconnects with backoff.
- Backpressure: while the source's handlers have more pending executions than ``max_pending``
  (``SOLO_OS_CONSUME_MAX_PENDING``), nothing is pulled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
from opentelemetry import trace

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.observability import metrics, tracing
from solo_os.runtime import brokers, ingress
from solo_os.sources import _base as sources_base
from solo_os.sources import queue as queue_sources
from solo_os.store import ports

log = structlog.get_logger("solo_os.consumer")
MAX_BACKOFF = 5.0
BACKLOG_RECHECK = 0.5  # seconds between backlog reads while paused, and at most between pulls


def queue_sources_of(application: app_mod.App) -> dict[str, queue_sources.QueueSource]:
    """The app's queue-fed sources by name."""
    return {
        name: src for name, src in application.sources.items() if isinstance(src, queue_sources.QueueSource)
    }


class Consumer:
    """Reads one queue-fed source until ``stop`` is set."""

    def __init__(
        self,
        application: app_mod.App,
        name: str,
        source: queue_sources.QueueSource,
        store: ports.ConsumePort,
        *,
        clock: Callable[[], datetime] = store_mod.utcnow,
        broker: brokers.Broker | None = None,
        wait: float = 1.0,
    ) -> None:
        self.app = application
        self.name = name
        self.source = source
        self.store = store
        self.clock = clock
        self.broker = broker or brokers.for_source(source)
        self.wait = wait  # how long one pull waits for messages
        self.max_pending = source.max_pending or application.settings.consume_max_pending
        self.handlers = tuple(
            h.name for h in application.handlers.values() if h.kind == "event" and h.source == name
        )
        self.log = log.bind(source=name)
        self._backlog_checked = 0.0
        self._backlog_estimate = 0  # pending executions at the last read + those created since
        self._paused: str | None = None

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, consume, reconnect after a broker failure (with backoff), until ``stop``."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self.broker.open()
                self._pause(None)
                self.log.info("consume.started", location=self.source.location())
                delay = 0.2
                await self._consume(stop)
            except (brokers.BrokerError, OSError) as exc:
                self._pause("broker")
                self.log.warning("consume.broker_unavailable", error=str(exc), retry_in=delay)
            except Exception as exc:  # a bug: say so, keep the role alive
                self._pause("broker")
                self.log.exception("consume.crashed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            finally:
                with contextlib.suppress(Exception):
                    await self.broker.close()
            await _sleep(stop, delay)
            delay = min(delay * 2, MAX_BACKOFF)
        self._pause(None)

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self._backlogged():
                await _sleep(stop, BACKLOG_RECHECK)
                continue
            messages = await self.broker.fetch(self.source.batch_size, self.wait)
            if not messages:
                continue
            started = time.monotonic()
            if not await self.deliver(messages, stop):
                return  # stopping with the batch uncommitted: the broker delivers it again
            await self.broker.ack(messages)
            metrics.consumer_acks.labels(self.name).inc(len(messages))
            metrics.consumer_batch_seconds.labels(self.name).observe(time.monotonic() - started)

    async def _backlogged(self) -> bool:
        """Whether the source's handlers have more pending executions than the bound.

        The store is read when the executions this consumer created since the last read could
        have passed the bound, while paused, and at least every ``BACKLOG_RECHECK`` seconds; a
        store error here is left to ``deliver``.
        """
        if not self.handlers:
            return False
        now = time.monotonic()
        if (
            self._paused != "backpressure"
            and self._backlog_estimate <= self.max_pending
            and now - self._backlog_checked < BACKLOG_RECHECK
        ):
            return False
        self._backlog_checked = now
        try:
            pending = await self.store.pending_count(self.handlers, self.max_pending + 1)
        except errors.StoreError:
            return False
        self._backlog_estimate = pending
        if pending > self.max_pending:
            if self._paused != "backpressure":
                self.log.info(
                    "consume.paused", reason="backpressure", pending=pending, bound=self.max_pending
                )
            self._pause("backpressure")
            return True
        if self._paused == "backpressure":
            self.log.info("consume.resumed", reason="backpressure", pending=pending)
            self._pause(None)
        return False

    def _pause(self, reason: str | None) -> None:
        if reason == self._paused:
            return
        if self._paused is not None:
            metrics.consumer_paused.labels(self.name, self._paused).set(0)
        if reason is not None:
            metrics.consumer_paused.labels(self.name, reason).set(1)
        self._paused = reason

    # --- one batch ---------------------------------------------------------------------------

    async def deliver(self, messages: Sequence[brokers.Message], stop: asyncio.Event) -> bool:
        """Store the batch's events (retrying through a store outage); False if stopped first."""
        with tracing.span(
            "queue.receive",
            kind=trace.SpanKind.CONSUMER,
            attributes={"solo_os.source": self.name, "messaging.batch.message_count": len(messages)},
        ):
            events = [self.event(m) for m in messages]
            unique = _first_of_each_key(events)
            results = await self._commit(unique, stop)
            if results is None:
                return False
        by_key = {(e.source, e.idempotency_key): r for e, r in zip(unique, results, strict=True)}
        firsts = {id(e) for e in unique}
        for event in events:
            result = by_key[(event.source, event.idempotency_key)]
            if id(event) not in firsts and result.outcome == "accepted":
                result = records.IngestResult("duplicate", result.event_id)  # a repeat in this batch
            self._report(event, result)
        self._backlog_estimate += sum(r.executions for r in results if r.outcome == "accepted")
        return True

    def event(self, message: brokers.Message) -> records.NewEvent:
        """A message as the event to store (accepted or rejected, with its executions)."""
        headers = sources_base.DictHeaders(
            [*message.headers, *([(queue_sources.MESSAGE_ID_HEADER, message.message_id)]
                                 if message.message_id else [])]
        )
        parent = headers.get("traceparent")
        built = ingress.build_event(
            self.app, self.name, self.source, headers, message.body, self.clock(),
            lambda key: ingress.pick_correlation_id(headers.get("x-correlation-id"), parent, key),
            trace_parent=parent if tracing.extract(parent) else tracing.current_traceparent(),
        )
        if isinstance(built, dict):  # queue sources answer no handshake; defensive
            raise errors.SoloOSError(f"source {self.name!r} answered a message with a handshake")
        return built

    async def _commit(
        self, events: Sequence[records.NewEvent], stop: asyncio.Event
    ) -> list[records.IngestResult] | None:
        """``store.ingest`` until it commits; None if ``stop`` came first (nothing committed
        that the caller will acknowledge)."""
        delay = 0.2
        failing = False
        while True:
            try:
                results = await self._ingest(events)
            except Exception as exc:  # whatever it was, the events are not known to be stored
                if not failing:
                    self.log.error("consume.store_unavailable", error=f"{type(exc).__name__}: {exc}")
                    failing = True
                self._pause("store")
                if stop.is_set():
                    return None
                await _sleep(stop, delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if failing:
                self.log.info("consume.store_available", batch=len(events))
                self._pause(None)
            return results

    async def _ingest(self, events: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        try:
            return list(await self.store.ingest(events))
        except errors.StoreUnavailable:
            raise
        except errors.StoreError:
            if len(events) > 1:  # one bad item must not hold up its neighbours
                return [r for e in events for r in await self._ingest([e])]
            # This event cannot be stored as it is: store it rejected so the queue never wedges.
            item = events[0]
            problem = {"loc": ["body"], "msg": "the message could not be stored", "type": "unstorable"}
            return list(await self.store.ingest([_rejected(item, problem)]))

    def _report(self, event: records.NewEvent, result: records.IngestResult) -> None:
        metrics.deliveries.labels(self.name, result.outcome).inc()
        bound = self.log.bind(event_type=event.type, correlation_id=event.correlation_id)
        if result.outcome == "rejected":
            bound.warning("consume.rejected", event_id=str(result.event_id), errors=len(result.errors or []))
        elif result.outcome == "duplicate":
            bound.info("consume.duplicate", event_id=str(result.event_id))
        else:
            bound.info("consume.accepted", event_id=str(result.event_id), executions=result.executions)


class Consumers:
    """Every queue-fed source of an app, each in its own loop (the ``consume`` role)."""

    def __init__(
        self,
        application: app_mod.App,
        store: ports.ConsumePort,
        *,
        clock: Callable[[], datetime] = store_mod.utcnow,
    ) -> None:
        self.consumers = [
            Consumer(application, name, src, store, clock=clock)
            for name, src in queue_sources_of(application).items()
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(c.run(stop) for c in self.consumers))


async def finish(task: asyncio.Task[None], grace: float) -> None:
    """Let a stopping consumer commit and acknowledge the batch in hand (at most ``grace``
    seconds), then cancel it: what it had not acknowledged is delivered again."""
    done, _ = await asyncio.wait({task}, timeout=max(0.1, grace))
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _first_of_each_key(events: Sequence[records.NewEvent]) -> list[records.NewEvent]:
    """One event per (source, key), the first: ``store.ingest`` takes no key twice per batch;
    the repeats are duplicates of it."""
    seen: dict[tuple[str, str], records.NewEvent] = {}
    for e in events:
        seen.setdefault((e.source, e.idempotency_key), e)
    return list(seen.values())


def _rejected(item: records.NewEvent, problem: dict[str, Any]) -> records.NewEvent:
    return dataclasses.replace(
        item, status="rejected", payload=None, errors=[problem], executions=()
    )


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


__all__ = ["Consumer", "Consumers", "finish", "queue_sources_of"]
