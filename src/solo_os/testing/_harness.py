"""``solo_os.testing.run``: an app's runtime in this process, with a test clock and a client.

Nothing runs in the background: a test posts deliveries (they are verified, validated and
stored exactly as in production), then calls ``drain()`` to run what is due, or
``advance()`` to let time pass with retries and cron fires run at their times. The worker
and the scheduler are the real ones, reading the test clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets as secrets_mod
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pydantic
import structlog

from solo_os import app as app_mod
from solo_os import config, errors
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.observability import logs as slog
from solo_os.outbound import http as http_mod
from solo_os.runtime import runtime as runtime_mod
from solo_os.runtime import scheduler as scheduler_mod
from solo_os.runtime import worker as worker_mod
from solo_os.sources import _base as sources_base
from solo_os.store import _alerts as alerts_store
from solo_os.testing import _client, _clock

BASE_URL = "http://solo-os.test"
POLL = 0.005  # seconds between looks at the queue while draining
MAX_SKIP = timedelta(days=366)  # drain(skip_retries=True) gives up past this much test time


class DrainTimeout(AssertionError):
    """Work was still running or due when ``drain``'s real-time ``timeout`` ran out."""


# --- settings and secrets --------------------------------------------------------------------


class _IsolatedSettings(config.Settings):
    """Settings from the given values only: tests do not read the environment or ``.env``."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> Any:
        return (init_settings,)


def isolated_settings(
    application: app_mod.App, database_url: str, overrides: Mapping[str, Any] | None = None
) -> config.Settings:
    """The app's settings for a test: its explicit ``App(settings=...)`` if any, else the
    defaults, with ``DATABASE_URL`` and ``overrides`` (SPEC names, ``MAX_RETRY_ATTEMPTS``, or
    field names, ``max_retry_attempts``) applied."""
    fields = config.Settings.model_fields
    by_alias = {(f.alias or n).upper(): n for n, f in fields.items()}
    values: dict[str, Any] = {}
    for key, value in {**(overrides or {}), "DATABASE_URL": database_url}.items():
        name = key if key in fields else by_alias.get(key.upper())
        if name is None:
            raise errors.ConfigError(f"solo-os test settings: unknown setting {key!r}")
        values[fields[name].alias or name] = value
    base = application._settings  # explicit settings given to App(...), or None
    if base is not None:
        values = {**{(f.alias or n): getattr(base, n) for n, f in fields.items()}, **values}
    try:
        return _IsolatedSettings(**values)
    except pydantic.ValidationError as exc:
        problems = [
            f"{str(e['loc'][0]).upper() if e['loc'] else 'config'}: {e['msg']}" for e in exc.errors()
        ]
        raise errors.ConfigError(problems) from None


def generate_secret(source: sources_base.Source) -> str:
    """A fresh secret in the form ``source`` accepts (Stripe ``whsec_...``, Standard Webhooks
    ``whsec_<base64>``, any text for the rest)."""
    if source.kind == "standard_webhooks":
        candidates = ["whsec_" + base64.b64encode(secrets_mod.token_bytes(32)).decode("ascii")]
    elif type(source).example_secret is not sources_base.Source.example_secret:
        candidates = [source.example_secret()]  # a format of its own (public keys: a test key)
    else:
        token = secrets_mod.token_hex(16)
        candidates = [f"solo-test-{token}", f"whsec_test_{token}"]
    for candidate in candidates:
        if source.check_secrets((candidate,)) is None:
            return candidate
    raise errors.ConfigError(
        f"source {source.name or source.kind!r}: no test secret fits its format; give one"
        f" as {source.secret_env} in the solo_env fixture (or env= of solo_os.testing.run)"
    )


_session_secrets: dict[tuple[str, str], str] = {}


def secrets_for(application: app_mod.App, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the app reads its secrets from in a test: ``given``, with a generated
    secret for every source whose variable it does not set, the test server's URL for a
    source's ``public_url_env`` (Twilio, Square, HubSpot), and placeholders for the alert
    channels' variables (URLs on ``alerts.solo-os.test``: nothing is sent from a test)."""
    env = dict(given or {})
    for name, source in application.sources.items():
        for url_env, holds in source.variables().items():  # Twilio's public_url_env=, ...
            if holds == "public URL" and url_env not in env:
                env[url_env] = f"{BASE_URL}/webhooks/{name}"
        if not source.verify_signatures or not source.secret_env:
            continue
        if source.secret_env in env or f"{source.secret_env}_FILE" in env:
            continue
        source.name = source.name or name
        # One secret per variable and kind for the whole session: every secret is added to the
        # log redactor, which must not grow with each test.
        cache_key = (source.kind, source.secret_env)
        if cache_key not in _session_secrets:
            _session_secrets[cache_key] = generate_secret(source)
        env[source.secret_env] = _session_secrets[cache_key]
    alerting = application.alerting
    for channel in alerting.channels if alerting is not None else ():
        for attribute in ("url_env", "secret_env", "username_env", "password_env"):
            variable = getattr(channel, attribute, None)
            if isinstance(variable, str) and variable not in env:
                if attribute == "url_env":  # an Apprise channel needs a URL Apprise knows
                    scheme = "json" if getattr(channel, "kind", "") == "apprise" else "https"
                    env[variable] = f"{scheme}://alerts.solo-os.test/{channel.name}"
                else:
                    env[variable] = _session_secrets.setdefault(
                        ("alerts", variable), f"solo-test-{secrets_mod.token_hex(16)}"
                    )
    return env


# --- captured logs -----------------------------------------------------------------------------


@contextlib.contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Like ``structlog.testing.capture_logs``, with the context solo-os binds through
    contextvars merged in and secrets redacted, as in the JSON lines production writes."""
    entries: list[MutableMapping[str, Any]] = []

    def capture(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        event["log_level"] = {"warn": "warning", "exception": "error"}.get(method, method)
        entries.append(event)
        raise structlog.DropEvent

    processors = structlog.get_config()["processors"]
    saved = list(processors)
    processors.clear()  # the same list object: loggers already bound keep a reference to it
    processors.extend([structlog.contextvars.merge_contextvars, slog.redactor, capture])
    structlog.configure(processors=processors)
    try:
        yield entries
    finally:
        processors.clear()
        processors.extend(saved)
        structlog.configure(processors=processors)


# --- the harness -------------------------------------------------------------------------------


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
        self._scheduler: scheduler_mod.Scheduler | None = None
        if self.app.schedules:
            self._scheduler = scheduler_mod.Scheduler(self.app, self.store, clock=clock)

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
        if self._scheduler is not None:
            await self._scheduler.tick(self.clock())  # schedules become active at test start

    # --- running work --------------------------------------------------------------------------

    async def drain(self, *, skip_retries: bool = False, timeout: float = 30.0) -> int:
        """Run every execution due at the current test time, and what those make due, until
        nothing is due or running; return how many attempts ran.

        A retry delayed into the future waits for the clock (``clock.advance`` then
        ``drain``), unless ``skip_retries``: then the clock jumps to each retry's time, with
        cron fires on the way run at theirs, until no execution is pending at all (each
        retry ends in success or the dead-letter queue). ``timeout`` is real seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ran = await self._run_due(deadline)
        if not skip_retries:
            return ran
        limit = self.clock() + MAX_SKIP
        while (due := await self._next_retry()) is not None:
            if due > limit:
                raise DrainTimeout(
                    f"drain(skip_retries=True): executions still pending after skipping"
                    f" {MAX_SKIP.days} days of test time"
                )
            ran += await self._advance_to(due, deadline)
        return ran

    async def advance(
        self, delta: timedelta | float = 0.0, /, *, timeout: float = 30.0, **parts: float
    ) -> int:
        """Let ``delta`` (or ``minutes=5``-style parts) of test time pass with the app running:
        every retry and cron fire in between runs at its own time. Returns attempts run."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        step += timedelta(**parts)
        if step < timedelta(0):
            raise ValueError(f"advance: time does not go backwards ({step})")
        deadline = asyncio.get_running_loop().time() + timeout
        return await self._advance_to(self.clock() + step, deadline)

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
        return await scheduler_mod.trigger(self.app, self.store, schedule, self.clock())

    async def replay(self, *executions: records.Execution | UUID) -> list[UUID]:
        """Put dead executions back to pending with a fresh attempt budget (``dlq replay``)."""
        default = self.app.settings.max_retry_attempts
        budgets = {h.name: self.app.policy(h).max_attempts or default for h in self.app.handlers.values()}
        return await self.store.replay([_id(x) for x in executions], budgets, default, self.clock())

    async def _advance_to(self, target: datetime, deadline: float) -> int:
        ran = await self._run_due(deadline)
        while True:
            now = self.clock()
            candidates = (await self._next_retry(), self._next_fire(now))
            step = min((t for t in candidates if t is not None and t > now), default=None)
            if step is None or step >= target:
                self.clock.set(max(target, now))
                return ran + await self._run_due(deadline)
            self.clock.set(step)
            ran += await self._run_due(deadline)

    def _next_fire(self, now: datetime) -> datetime | None:
        fires = [s.cron.next_after(now) for s in self.app.schedules.values()]
        return min(fires, default=None)

    async def _next_retry(self) -> datetime | None:
        pending = await self.store.list_executions(store_mod.Filters(status="pending", limit=0))
        return min((x.run_after for x in pending if x.run_after is not None), default=None)

    async def _busy(self) -> list[records.Execution]:
        """Executions running, or pending and due now."""
        now = self.clock()
        found = await self.store.list_executions(store_mod.Filters(status="running", limit=0))
        pending = await self.store.list_executions(store_mod.Filters(status="pending", limit=0))
        return found + [x for x in pending if x.run_after is None or x.run_after <= now]

    async def _tick(self) -> None:
        """Let the scheduler fire what is due (and start queued fires once nothing runs)."""
        if self._scheduler is not None:
            await self._scheduler.tick(self.clock())

    async def _run_due(self, deadline: float) -> int:
        await self._tick()
        if not await self._busy():
            return 0
        options: dict[str, Any] = {"poll_interval": POLL, "shutdown_grace": 3600.0}
        if self.concurrency:
            options["concurrency"] = self.concurrency
        worker = worker_mod.Worker(self.app, self.store, clock=self.clock, **options)
        if self.http_transport is not None:
            worker.http = http_mod.Client(
                limits=self.app.rate_limits, options=self.app.http_options, buckets=self.store,
                transport=self.http_transport,
            )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="solo-os-test-worker")
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(POLL)
                if task.done():
                    task.result()  # the worker crashed: show why
                    raise RuntimeError("the test worker stopped on its own")
                busy = await self._busy()
                if not busy:
                    await self._tick()  # a queued cron fire starts once nothing of it runs
                    if not await self._busy():
                        break
                    continue
                if loop.time() > deadline:
                    shown = ", ".join(f"{x.handler} ({x.status}, attempt {x.attempts})" for x in busy[:10])
                    raise DrainTimeout(f"drain: still running or due when the timeout ran out: {shown}")
        finally:
            stop.set()
            await task
        return worker.executed

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
