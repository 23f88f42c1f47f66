"""``solo_os.testing.run``: an app's runtime in this process, with a test clock and a client.

Nothing runs in the background: a test posts deliveries (they are verified, validated and
stored exactly as in production), then calls ``drain()`` to run what is due, or
``advance()`` to let time pass with retries and cron fires run at their times. The worker
and the scheduler are the real ones, reading the test clock (``_drive``). Settings and
secrets come from ``_settings``, captured logs from ``_logs``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.ops import budgets as ops_budgets
from solo_os.ops import replay as ops_replay
from solo_os.ops import schedules as ops_schedules
from solo_os.runtime import runtime as runtime_mod
from solo_os.store import _alerts as alerts_store
from solo_os.testing import _client, _clock, _drive
from solo_os.testing._drive import DrainTimeout
from solo_os.testing._logs import capture_logs
from solo_os.testing._settings import BASE_URL, generate_secret, isolated_settings, secrets_for

__all__ = [
    "BASE_URL", "DrainTimeout", "Solo", "capture_logs", "generate_secret", "isolated_settings", "run",
    "secrets_for",
]


class Solo:
    """A running app under test. Made by ``run()`` or the ``solo`` pytest fixture.

    - ``client``: signed deliveries through the real ASGI app (``client.stripe(...)``,
      ``client.send(source, type, data)``), and ``client.http`` for any other request;
    - ``clock``: the test time; ``drain()``, ``advance()`` run what it makes due;
    - ``executions()``, ``dead_letters()``, ``events()``, ``attempts()``, ``steps()`` and the
      ``assert_*`` helpers look into the store; ``logs()`` into the captured log lines.
    """

    def __init__(
        self,
        runtime: runtime_mod.Runtime,
        client: _client.DeliveryClient,
        clock: _clock.Clock,
        logs: list[MutableMapping[str, Any]],
        env: Mapping[str, str],
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.app = runtime.app
        self.client = client
        self.clock = clock
        self.env = dict(env)
        #: Where ``ctx.http`` calls go (e.g. ``httpx.MockTransport(fn)``); None: the network.
        self.http_transport = http_transport
        self.concurrency = concurrency
        self._logs = logs
        self._driver = _drive.Driver(self)

    @property
    def store(self) -> store_mod.Store:
        if self.runtime.store is None:
            raise errors.StoreUnavailable("the test runtime is not running")
        return self.runtime.store

    @property
    def database_url(self) -> str:
        return self.app.settings.database_url

    def secret(self, source: str) -> str:
        """The secret ``source`` (a name, or the one source of a kind) signs with in this test."""
        return self.client.source(source).signing_secret()

    async def _start(self) -> None:
        await self._driver.start()

    # --- running work --------------------------------------------------------------------------

    async def drain(self, *, skip_retries: bool = False, timeout: float = 30.0) -> int:
        """Run every execution due at the current test time, and what those make due, until
        nothing is due or running; return how many attempts ran.

        A retry delayed into the future waits for the clock (``clock.advance`` then
        ``drain``), unless ``skip_retries``: then the clock jumps to each retry's time, with
        cron fires on the way run at theirs, until no execution is pending at all (each
        retry ends in success or the dead-letter queue). ``timeout`` is real seconds.
        """
        return await self._driver.drain(skip_retries=skip_retries, timeout=timeout)

    async def advance(
        self, delta: timedelta | float = 0.0, /, *, timeout: float = 30.0, **parts: float
    ) -> int:
        """Let ``delta`` (or ``minutes=5``-style parts) of test time pass with the app running:
        every retry and cron fire in between runs at its own time. Returns attempts run."""
        return await self._driver.advance(delta, timeout=timeout, **parts)

    async def alerts(self) -> list[alerts_store.Alert]:
        """The alerts the app raised (``app.alerts(...)``), newest first: dead executions,
        failing, missed and recovered schedules. Recorded as the alerter records them, at
        the test time; nothing is sent to the channels."""
        alerting = self.app.alerting
        if alerting is None:
            raise errors.ConfigError("the app declares no alerts (app.alerts(...))")
        policy = alerts_store.AlertPolicy(alerting.window, alerting.group_wait)
        now = self.clock()
        await self.store.scan_dead(now, policy, lag=timedelta(0))
        await self.store.close_alerts(now, sorted(c.name for c in alerting.channels))
        return await self.store.list_alerts(limit=0)


    async def trigger(self, schedule: str) -> UUID:
        """Fire cron ``schedule`` now (like ``solo-os schedules trigger``); ``drain()`` runs it."""
        return await ops_schedules.trigger(self.app, self.store, schedule, self.clock())

    async def replay(self, *executions: records.Execution | UUID) -> list[UUID]:
        """Put dead executions back to pending with a fresh attempt budget (``dlq replay``)."""
        ids = [_id(x) for x in executions]
        done = await ops_replay.replay(self.store, ids, ops_budgets.of_app(self.app), self.clock())
        return list(done.replayed)

    # --- looking into the store ----------------------------------------------------------------

    def _check_handler(self, handler: str | None) -> None:
        if handler is not None and handler not in self.app.handlers:
            known = ", ".join(sorted(self.app.handlers)) or "none"
            raise AssertionError(f"the app has no handler {handler!r} (handlers: {known})")

    async def executions(
        self,
        handler: str | None = None,
        *,
        status: str | None = None,
        source: str | None = None,
        type: str | None = None,  # the SPEC's filter name
    ) -> list[records.Execution]:
        """Executions, oldest first, filtered by handler, status, event source and type."""
        self._check_handler(handler)
        if status is not None and status not in records.EXECUTION_STATUSES:
            raise ValueError(f"status must be one of {', '.join(records.EXECUTION_STATUSES)}, not {status!r}")
        f = store_mod.Filters(handler=handler, status=status, source=source, type=type, limit=0)
        return list(reversed(await self.store.list_executions(f)))

    async def dead_letters(self, handler: str | None = None) -> list[records.Execution]:
        """Dead executions (the dead-letter queue), oldest first."""
        return await self.executions(handler, status="dead")

    async def events(
        self,
        *,
        source: str | None = None,
        type: str | None = None,  # the SPEC's filter name
        status: str | None = None,
    ) -> list[records.Event]:
        """Stored events, oldest first, with payload and headers."""
        listed = await self.store.list_events(
            store_mod.Filters(source=source, type=type, status=status, limit=0)
        )
        full = []
        for e in reversed(listed):
            got = await self.store.get_event(e.id)
            if got is not None:
                full.append(got[0])
        return full

    async def attempts(self, execution: records.Execution | UUID) -> list[records.Attempt]:
        return await self.store.list_attempts(_id(execution))

    async def steps(self, execution: records.Execution | UUID) -> dict[str, Any]:
        """The durable steps an execution recorded: name -> stored result."""
        return await self.store.load_steps(_id(execution))

    async def assert_status(
        self, handler: str, status: str, *, times: int | None = None, error: str | None = None
    ) -> list[records.Execution]:
        """Executions of ``handler`` in ``status`` (exactly ``times`` of them if given, at
        least one otherwise; each ``last_error`` containing ``error`` if given)."""
        every = await self.executions(handler)
        found = [x for x in every if x.status == status]
        if error is not None:
            found = [x for x in found if error in (x.last_error or "")]
        if (times is None and found) or len(found) == times:
            return found
        wanted = f"exactly {times}" if times is not None else "at least one"
        about = f" with an error containing {error!r}" if error is not None else ""
        raise AssertionError(
            f"expected {wanted} {status} execution(s) of {handler!r}{about}, found {len(found)}"
            f" among {len(every)}:\n{_describe(every)}"
        )

    async def assert_succeeded(self, handler: str, *, times: int | None = None) -> list[records.Execution]:
        """``handler`` succeeded ``times`` times (at least once if not given)."""
        return await self.assert_status(handler, "succeeded", times=times)

    async def assert_dead(
        self, handler: str, *, times: int | None = None, error: str | None = None
    ) -> list[records.Execution]:
        """``handler`` went dead ``times`` times (at least once), its last error containing ``error``."""
        return await self.assert_status(handler, "dead", times=times, error=error)

    async def assert_idle(self) -> None:
        """Nothing pending or running: every execution finished (succeeded, dead, cancelled)."""
        every = await self.executions()
        open_ = [x for x in every if x.status in ("pending", "running")]
        if open_:
            raise AssertionError(f"{len(open_)} execution(s) not finished:\n{_describe(open_)}")

    # --- logs ----------------------------------------------------------------------------------

    def logs(self, event: str | None = None, **fields: Any) -> list[MutableMapping[str, Any]]:
        """Captured log lines (dicts) whose ``event`` and every given field match, in order.

        ``level=`` matches the level (``info``, ``warning``, ``error``). Lines are captured
        as written in production: context bound by solo-os merged in, secrets redacted.
        """
        if "level" in fields:
            fields["log_level"] = {"warn": "warning"}.get(fields["level"], fields.pop("level"))
        out = []
        for entry in list(self._logs):
            if event is not None and entry.get("event") != event:
                continue
            if all(k in entry and entry[k] == v for k, v in fields.items()):
                out.append(entry)
        return out

    def assert_logged(
        self, event: str, *, times: int | None = None, **fields: Any
    ) -> list[MutableMapping[str, Any]]:
        """Lines ``event`` with ``fields`` were logged (exactly ``times`` if given)."""
        found = self.logs(event, **fields)
        if (times is None and found) or len(found) == times:
            return found
        same = self.logs(event)
        wanted = f"exactly {times}" if times is not None else "at least one"
        shown = "\n".join(f"  {dict(e)}" for e in same[:20]) or "  (none)"
        raise AssertionError(
            f"expected {wanted} {event!r} log line(s) with {fields}, found {len(found)};"
            f" {event!r} lines:\n{shown}"
        )

    def clear_logs(self) -> None:
        self._logs.clear()


def _id(x: records.Execution | UUID) -> UUID:
    return x.id if isinstance(x, records.Execution) else x


def _describe(rows: Sequence[records.Execution]) -> str:
    if not rows:
        return "  (none)"
    return "\n".join(
        f"  {x.id} {x.handler} {x.status} attempts={x.attempts}/{x.max_attempts}"
        + (f" last_error={x.last_error[:200]!r}" if x.last_error else "")
        for x in rows
    )


@contextlib.asynccontextmanager
async def run(
    application: app_mod.App,
    *,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    clock: _clock.Clock | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    concurrency: int | None = None,
) -> AsyncIterator[Solo]:
    """Run ``application`` in this process for a test, and stop it afterwards.

    - ``database_url``: a migrated or empty database (migrated here); default: a new SQLite
      file in a temporary directory, removed afterwards;
    - ``env``: where the sources' secrets come from; every secret not given is generated;
    - ``settings``: overrides (``{"MAX_RETRY_ATTEMPTS": 5}``); the environment and ``.env``
      are not read;
    - ``clock``: the test time (default: a ``Clock`` frozen at the real time now);
    - ``http_transport``: where ``ctx.http`` goes (e.g. ``httpx.MockTransport``).
    """
    clock = clock or _clock.Clock()
    tmp: str | None = None
    if database_url is None:
        tmp = tempfile.mkdtemp(prefix="solo-os-test-")
        database_url = f"sqlite:///{Path(tmp) / 'solo_os.db'}"
    saved = application._settings
    try:
        application._settings = isolated_settings(application, database_url, settings)
        secret_env = secrets_for(application, env)
        rt = runtime_mod.Runtime(
            application, roles=("serve",), migrate=True, env=secret_env, clock=clock
        )
        with capture_logs() as logs:
            await rt.start()
            try:
                transport = httpx.ASGITransport(app=rt.asgi(lifespan=False))
                async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as http:
                    client = _client.DeliveryClient(application, http, clock)
                    solo = Solo(
                        rt, client, clock, logs, secret_env,
                        http_transport=http_transport, concurrency=concurrency,
                    )
                    await solo._start()
                    yield solo
            finally:
                await rt.stop()
    finally:
        application._settings = saved
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

