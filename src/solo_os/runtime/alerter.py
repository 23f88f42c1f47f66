"""The alert delivery loop: the runtime half of ``solo_os.alerts``.

The ``Alerter`` (in every worker and scheduler process) scans the executions table for dead ones,
closes alerts whose gathering time is over and delivers them, one claim per delivery
(``FOR UPDATE SKIP LOCKED``), retrying with exponential backoff for up to three days. The channels
and the message rendering are declared in ``solo_os.alerts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from solo_os import alerts, errors
from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.core import records as outbox
from solo_os.observability import logs as slog
from solo_os.store import ports

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger("solo_os.alerts")  # the logger name predates this module: kept

class Alerter:
    """Finds dead executions, closes gathered alerts and delivers them, until stopped."""

    def __init__(
        self,
        application: app_mod.App,
        store: ports.AlertPort,
        *,
        clock: Callable[[], datetime] | None = None,
        interval: float = 1.0,
        base_delay: float = 2.0,
        max_delay: float = 600.0,
        give_up_after: timedelta = timedelta(days=3),
        lease: timedelta = timedelta(seconds=60),
        dead_lag: timedelta = timedelta(seconds=60),
        retention: timedelta = timedelta(days=30),
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if application.alerting is None:
            raise errors.ConfigError("the alerter needs app.alerts(...)")
        self.app = application
        self.store = store
        self.alerting = application.alerting
        self.channels: dict[str, alerts.Channel] = {c.name: c for c in self.alerting.channels}  # type: ignore[misc]
        if clock is None:
            clock = store_mod.utcnow
        self.clock = clock
        self.interval = interval
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self.lease = lease
        self.dead_lag = dead_lag
        self.retention = retention
        self._client = client
        self._rng = rng or random.Random()
        self._pruned_at: datetime | None = None
        for channel in self.channels.values():
            slog.redactor.add(*channel.secrets)

    @property
    def policy(self) -> outbox.AlertPolicy:
        return outbox.AlertPolicy(self.alerting.window, self.alerting.group_wait)

    async def run(self, stop: asyncio.Event) -> None:
        import httpx

        async with contextlib.AsyncExitStack() as stack:
            if self._client is None:
                self._client = await stack.enter_async_context(httpx.AsyncClient(timeout=15.0))
            log.info("alerter.started", channels=sorted(self.channels))
            failures = 0
            while not stop.is_set():
                try:
                    await self.run_once()
                    failures = 0
                    delay = self.interval * self._rng.uniform(0.8, 1.2)
                except errors.StoreError as exc:
                    failures += 1
                    delay = min(30.0, self.interval * 2**failures)
                    log.warning("alerter.failed", error=str(exc), retry_in=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def run_once(self) -> int:
        """One pass: scan, close, deliver. Returns how many deliveries were sent."""
        now = self.clock()
        await self.store.scan_dead(now, self.policy, lag=self.dead_lag)
        await self.store.close_alerts(now, sorted(self.channels))
        sent = await self.deliver(now)
        if self._pruned_at is None or now - self._pruned_at > timedelta(hours=1):
            self._pruned_at = now
            await self.store.prune_alerts(now - self.retention)
        return sent

    async def deliver(self, now: datetime) -> int:
        claimed = await self.store.claim_deliveries(now, 50, self.lease)
        if not claimed:
            return 0
        import httpx

        client = self._client or httpx.AsyncClient(timeout=15.0)
        try:
            results = await asyncio.gather(*(self._send(d, client) for d in claimed))
        finally:
            if client is not self._client:
                await client.aclose()
        return sum(results)

    async def _send(self, d: outbox.Delivery, client: httpx.AsyncClient) -> bool:
        message = alerts.render(d.alert, self.app.service)
        channel = self.channels.get(d.channel)
        error: str | None = None
        try:
            if channel is None:
                raise alerts.DeliveryError(f"no channel named {d.channel!r} in this app")
            await asyncio.wait_for(channel.send(message, client), 60.0)
        except (alerts.DeliveryError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug in a channel must not stop the others
            error = f"{type(exc).__name__}: {exc}"
        error = alerts.clean(error) if error else None
        now = self.clock()
        fields = {"alert_id": str(d.alert.id), "channel": d.channel, "key": d.alert.key, "attempt": d.attempt}
        if error is None:
            await self.store.finish_delivery(d.alert.id, d.channel, d.attempt, now)
            log.info("alert.sent", **fields, count=d.alert.total)
            return True
        deadline = d.created_at + self.give_up_after
        if now >= deadline:
            await self.store.finish_delivery(d.alert.id, d.channel, d.attempt, now, error=error)
            log.error("alert.failed", **fields, error=error)
            return False
        delay = min(self.max_delay, self.base_delay * 2 ** min(d.attempt - 1, 30))
        delay = self._rng.uniform(delay / 2, delay)
        retry_at = min(now + timedelta(seconds=delay), deadline)  # one last try at the deadline
        await self.store.finish_delivery(
            d.alert.id, d.channel, d.attempt, now, error=error, retry_at=retry_at
        )
        log.warning("alert.retrying", **fields, error=error, retry_in=round(delay, 2))
        return False


async def record(
    application: app_mod.App, store: ports.AlertPort, occurrences: Sequence[outbox.Occurrence]
) -> int:
    """Record occurrences into the outbox (nothing when the app has no ``app.alerts``)."""
    if application.alerting is None:
        return 0
    policy = outbox.AlertPolicy(application.alerting.window, application.alerting.group_wait)
    return await store.record_occurrences(occurrences, store_mod.utcnow(), policy)
