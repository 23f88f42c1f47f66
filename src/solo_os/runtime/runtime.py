"""Puts an ``App`` to work: the store, the group-commit writer, ingress and worker, one lifecycle.

``solo-os run`` starts every role in one process; ``serve`` and ``worker`` start one role
each, for scale-out. Roles share nothing but the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from solo_os import app as app_mod
from solo_os import config, errors
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.observability import logs as slog
from solo_os.observability import metrics
from solo_os.runtime import alerter as alerter_mod
from solo_os.runtime import batch as _batch
from solo_os.runtime import connecting, ingress
from solo_os.runtime import consumer as consumer_mod
from solo_os.runtime import pruner as pruner_mod
from solo_os.runtime import scheduler as scheduler_mod
from solo_os.runtime import worker as worker_mod

log = structlog.get_logger("solo_os.runtime")
Role = str  # "serve" | "worker" | "scheduler" | "consume"


class Runtime:
    def __init__(
        self,
        application: app_mod.App,
        *,
        roles: Collection[Role] = ("serve", "worker"),
        migrate: bool = False,
        store: store_mod.Store | None = None,
        worker_options: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = store_mod.utcnow,
    ) -> None:
        self.app = application
        self._env = env
        self.clock = clock  # one "now" for ingress and worker; solo_os.testing passes a fake one
        self.roles = frozenset(roles)
        self.migrate = migrate
        self._given_store = store
        self.store: store_mod.Store | None = store
        self.worker: worker_mod.Worker | None = None
        self._worker_options = worker_options or {}
        self._committer: _batch.GroupCommit[records.NewEvent, records.IngestResult] | None = None
        self._stop = asyncio.Event()
        self._worker_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None
        self._metrics_task: asyncio.Task[None] | None = None
        self._gauges: metrics.StoreGauges | None = None
        self.consumers: consumer_mod.Consumers | None = None
        self._consume_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def settings(self) -> config.Settings:
        return self.app.settings

    def prepare(self) -> None:
        """Validate configuration and secrets (raises ``ConfigError`` with every problem)."""
        for warning in self.app.prepare(self._env):
            log.warning("config.warning", message=warning)
        for src in self.app.sources.values():
            slog.redactor.add(*src.secrets)
        slog.redactor.add_keys(*self.app.redact)

    async def start(self, waiting: Callable[[], None] | None = None) -> None:
        """Connect (waiting up to ``SOLO_OS_DB_CONNECT_TIMEOUT`` for the database; ``waiting``
        is called once if it is not there at the first attempt) and start every role. A stop
        requested while waiting returns without starting anything."""
        self.prepare()
        if self.store is None:
            self.store = store_mod.connect(self.settings.database_url, self.settings)
        if not await self._connect(waiting):
            return
        if self.migrate:
            revision = await self.store.migrate()
            log.info("store.migrated", revision=revision, dialect=self.store.dialect)
        else:
            await self._require_current_schema()
        await self.store.start()
        if "serve" in self.roles:
            writers = self.store.concurrent_writers
            self._committer = _batch.GroupCommit(
                self.store.ingest,
                max_batch=500,
                writers=writers,
                key=lambda e: (e.source, e.idempotency_key),
                name="ingest",
            )
            self._committer.start()
        if "worker" in self.roles:
            self.worker = self._new_worker()
            self._worker_task = asyncio.create_task(self._keep_working(), name="solo-os-worker")
            if self.settings.retention_days:  # the daily prune (runtime/pruner.py)
                pruner = pruner_mod.Pruner(self.store, timedelta(days=self.settings.retention_days))
                task = asyncio.create_task(pruner.run(self._stop), name="solo-os-retention")
                self._background.append(task)
        if "scheduler" in self.roles and self.app.schedules:  # fires exactly once across replicas
            fires = scheduler_mod.Scheduler(self.app, self.store, clock=self.clock)
            self._background.append(asyncio.create_task(fires.run(self._stop), name="solo-os-scheduler"))
        if "consume" in self.roles and consumer_mod.queue_sources_of(self.app):  # queue-fed sources
            self.consumers = consumer_mod.Consumers(self.app, self.store, clock=self.clock)
            self._consume_task = asyncio.create_task(self.consumers.run(self._stop), name="solo-os-consume")
        if self.app.alerting is not None and self.roles & {"worker", "scheduler"}:
            alerter = alerter_mod.Alerter(self.app, self.store, clock=self.clock)
            self._background.append(asyncio.create_task(alerter.run(self._stop), name="solo-os-alerts"))
        if self.settings.metrics_port and self._metrics_server is None:
            await self._serve_metrics(self.settings.metrics_host, self.settings.metrics_port)
        self._started = True
        log.info(
            "runtime.started",
            roles=sorted(self.roles),
            dialect=self.store.dialect,
            service=self.app.service,
        )

    async def _connect(self, waiting: Callable[[], None] | None) -> bool:
        """Wait for the store (``runtime/connecting.py``); meanwhile ``/readyz`` (on the
        metrics port too, started early) answers 503. False: stopped while waiting."""
        assert self.store is not None

        async def early() -> None:
            if self.settings.metrics_port and self._metrics_server is None:
                await self._serve_metrics(self.settings.metrics_host, self.settings.metrics_port)

        first_failure: list[asyncio.Task[None]] = []

        def on_waiting() -> None:
            first_failure.append(asyncio.create_task(early()))
            if waiting is not None:
                waiting()

        try:
            return await connecting.wait_for_store(
                self.store.ping, timeout=self.settings.db_connect_timeout, stop=self._stop,
                where=connecting.where(self.settings.database_url), waiting=on_waiting,
            )
        finally:
            for task in first_failure:
                await task  # a metrics port that cannot be bound is a ConfigError here

    def _new_worker(self) -> worker_mod.Worker:
        assert self.store is not None
        return worker_mod.Worker(self.app, self.store, **{"clock": self.clock, **self._worker_options})

    async def _keep_working(self) -> None:
        """Run the worker until stop; should it ever end before that, say so and start another."""
        delay = 0.5
        worker = self.worker
        while worker is not None:
            try:
                await worker.run(self._stop)
            except Exception:
                log.exception("worker.crashed", worker_id=worker.worker_id, restart_in=delay)
            else:
                if self._stop.is_set():
                    return
                log.error("worker.ended", worker_id=worker.worker_id, restart_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            delay = min(delay * 2, 30.0)
            self.worker = worker = self._new_worker()

    def unready(self) -> str | None:
        """Why this process cannot do all its work now (for ``/readyz``), or None."""
        if not self._started and not self._stop.is_set():
            return "starting"
        if "worker" not in self.roles or self._stop.is_set():
            return None
        if self.worker is None or not self.worker.looping:
            return "not running"
        return None

    async def _require_current_schema(self) -> None:
        assert self.store is not None
        current = await self.store.current_revision()
        head = self.store.head_revision()
        if current != head:
            raise errors.ConfigError(
                f"DATABASE_URL: schema is at revision {current or 'none'}, this solo-os needs {head}; "
                "run 'solo-os db upgrade' first"
            )

    @property
    def gauges(self) -> metrics.StoreGauges:
        """The store-backed gauges of this process, shared by wherever /metrics is served."""
        if self._gauges is None:
            self._gauges = metrics.StoreGauges(self.settings.metrics_refresh_seconds, self.clock)
        return self._gauges

    def _metrics_token(self) -> str | None:
        token = self.settings.admin_token
        if token is None or self.settings.metrics_auth != "token":
            return None
        return token.get_secret_value()

    async def _serve_metrics(self, host: str, port: int) -> None:
        """``GET /metrics`` on a port of its own (``SOLO_OS_METRICS_PORT``), in this loop."""
        import uvicorn  # only processes that serve metrics on their own port need it here

        from solo_os.runtime import (
            httpserver as _httpserver,  # the same slow-client guard as the webhook port
        )

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:  # the process's main loop owns the signals
                yield

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if os.environ.get("SOLO_OS_REUSE_PORT"):  # `serve --workers N`: every child binds it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise errors.ConfigError(
                f"SOLO_OS_METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})"
            ) from None
        app = self._with_readyz(
            metrics.asgi_app(self.gauges, self._current_store, self._metrics_token())
        )
        server = _Server(
            uvicorn.Config(
                app, lifespan="off", log_config=None, access_log=False, server_header=False,
                http=_httpserver.protocol_for(self.settings),
            )
        )
        self._metrics_server = server
        sock.listen(128)  # scrapes that come before the server's task starts wait in the backlog
        self._metrics_task = asyncio.create_task(server.serve(sockets=[sock]), name="solo-os-metrics")

    def _with_readyz(self, inner: Any) -> Any:
        """``inner`` (the metrics app) plus ``GET /readyz``: a ``worker`` process has no other
        port, and its supervisor should see when no worker loop runs."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/readyz":
                await inner(scope, receive, send)
                return
            status, body = 200, b'{"status":"ready"}'
            if (reason := self.unready()) is not None:
                status, body = 503, b'{"status":"unavailable","worker":"%s"}' % reason.encode()
            else:
                try:
                    await self._current_store().ping()
                except errors.StoreError:
                    status, body = 503, b'{"status":"unavailable","store":"unreachable"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return app

    async def stop(self) -> None:
        self._stop.set()
        if self._consume_task is not None:  # the batch in hand is committed and acknowledged
            await consumer_mod.finish(self._consume_task, self.settings.shutdown_grace_seconds)
            self._consume_task = None
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._metrics_server is not None and self._metrics_task is not None:
            self._metrics_server.should_exit = True
            await asyncio.gather(self._metrics_task, return_exceptions=True)
            self._metrics_server = self._metrics_task = None
        if self._worker_task is not None:
            await self._worker_task
            self._worker_task = None
        if self._committer is not None:
            await self._committer.close()
            self._committer = None
        if self.store is not None and self._given_store is None:
            await self.store.close()
        log.info("runtime.stopped")

    async def submit(self, event: records.NewEvent) -> records.IngestResult:
        if self._committer is None:
            raise errors.StoreUnavailable("ingress is not running")
        return await self._committer.submit(event)

    def asgi(self, *, lifespan: bool = True) -> Any:
        """The ASGI app. With ``lifespan`` it starts and stops this runtime itself (tests,
        other servers); the CLI starts the runtime before the server and passes False."""

        @contextlib.asynccontextmanager
        async def span(_app: Any) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        extra: list[Any] = []
        if self.settings.admin_token is not None:
            from solo_os import admin  # FastAPI is imported only where the admin API is served

            extra = admin.routes(self.app, self._current_store)
        return ingress.asgi(
            ingress.Ingress(
                self.app, self.submit, self._current_store, self.clock,
                gauges=self.gauges, serve_metrics=not self.settings.metrics_port,
                unready=self.unready,
            ),
            span if lifespan else None,
            extra,
        )

    def _current_store(self) -> store_mod.Store:
        if self.store is None:
            raise errors.StoreUnavailable("store not started")
        return self.store

    def request_stop(self) -> None:
        """A stop signal arrived: stop claiming and start draining now, and make sure the process
        ends within ``SOLO_OS_SHUTDOWN_GRACE`` whatever its threads do (``hard_exit_after``)."""
        if not self._stop.is_set():
            log.info("runtime.stopping", grace_seconds=self.settings.shutdown_grace_seconds)
            hard_exit_after(self.settings.shutdown_grace_seconds)
            if self.worker is not None:
                self.worker.stop_requested_at = time.monotonic()
        self._stop.set()

    async def run_worker(self) -> None:
        """Run the worker role until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()


def hard_exit_after(seconds: float) -> None:
    """End the process ``seconds`` from now if it has not ended by itself (CLI processes only).

    The worker drains for most of the grace period, records what is still running as
    interrupted and exits; this is the backstop for when it cannot finish in time (threads
    that keep the interpreter busy, a store that does not answer). faulthandler's watchdog is a
    C thread that needs no GIL once armed: it writes every thread's stack to stderr (where the
    process was stuck) and exits with status 1. (Arming needs the interpreter: a C extension
    that holds the GIL from before the signal blocks even this; only SIGKILL ends that.)
    """
    faulthandler.dump_traceback_later(max(0.1, seconds), exit=True)
    # A handler thread that spins keeps the GIL for the whole switch interval (5 ms) each time
    # the event loop wants it back; every step of the shutdown waits that long. A shorter
    # interval from here on keeps the shutdown's own steps well inside the grace.
    sys.setswitchinterval(0.0005)
