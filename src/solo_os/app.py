"""The user's ``App``: sources, handlers and their policies. Registration only; no I/O."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar, Unpack, runtime_checkable
from uuid import UUID

import pydantic

from solo_os import config, errors
from solo_os.core import cron as cron_mod
from solo_os.core import flow as flow_mod
from solo_os.core import ids, ratelimit, records, retry, schedule_plan, schemas, workflow
from solo_os.core.schedule_plan import Catchup as Catchup  # the pure plan reads a Schedule
from solo_os.core.schedule_plan import Overlap as Overlap
from solo_os.core.schedule_plan import Schedule as Schedule
from solo_os.outbound import options as options_mod
from solo_os.sources import _base as sources_base
from solo_os.sources.internal import internal as internal_source

F = TypeVar("F", bound=Callable[..., Any])
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Handler:
    """One registered handler: what it listens to and how it is run."""

    name: str
    source: str
    event_type: str  # "*" for every type of the source
    fn: Callable[..., Any]
    schema: type[pydantic.BaseModel] | None
    retry: retry.Retry
    timeout: float
    is_async: bool
    kind: Literal["event", "cron"] = "event"  # a cron handler is called as fn(ctx)
    versioning: schemas.Versioning | None = None  # upcasters from older payload versions
    cancel_on: tuple[workflow.CancelOn, ...] = ()  # events that cancel its open executions
    flow: flow_mod.Options | None = None  # flow control (SPEC section 7)

    def load(self, payload: Any) -> Any:
        """The handler's argument: ``payload`` upcast to the schema's version and validated.

        Raises ``pydantic.ValidationError``, or ``errors.PayloadError`` when upcasting fails.
        """
        if self.schema is None:
            return payload
        name = self.schema.__name__
        return self.schema.model_validate(schemas.upcast(self.versioning, payload, name))

    def flow_mark(self, payload: Any) -> records.FlowMark | None:
        """The flow keys of an execution for ``payload`` (SPEC 7), evaluated on its input."""
        if self.flow is None:
            return None
        try:
            return self.flow.mark(self.name, self.load(payload))
        except (pydantic.ValidationError, errors.PayloadError) as exc:
            return records.FlowMark(error=f"flow keys: the input does not load: {exc}")


@runtime_checkable
class AlertChannel(Protocol):
    """Where alerts go (``solo_os.alerts.slack/webhook/email/apprise``)."""

    name: str

    def bind(self, env: Mapping[str, str]) -> list[str]: ...


@dataclass(frozen=True)
class Alerting:
    """``app.alerts(...)``: the channels, and how alerts are gathered and deduplicated."""

    channels: tuple[AlertChannel, ...]
    window: timedelta  # at most one alert per key (e.g. "dead:fulfil") per window
    group_wait: timedelta  # how long the first occurrence waits for others to join it


class App:
    """A solo-os application: declare sources and handlers, then run it with the CLI.

    Nothing is read from the environment or the database at construction; ``prepare()``
    (called by the runtime) resolves the settings and every source's secrets, and fails with
    one ``ConfigError`` listing every problem.
    """

    def __init__(
        self,
        service: str = "solo-os",
        *,
        settings: config.Settings | None = None,
        redact: tuple[str, ...] | list[str] = (),
        store_headers: tuple[str, ...] | list[str] = (),
    ) -> None:
        """``redact`` names payload fields (e.g. ``"email"``, ``"card_number"``) whose values
        never reach the logs, at any depth, even when a handler logs the whole event.
        ``store_headers`` names headers to keep with events although their names look like
        credentials (``x-tenant-key``); signature headers, ``authorization`` and cookies are
        never kept (``Source.stored_headers``)."""
        self.service, self.redact = service, tuple(redact)
        self.store_headers = frozenset(h.strip().lower() for h in store_headers)
        self._settings = settings
        self._sources: dict[str, sources_base.Source] = {"internal": internal_source()}  # implied
        self._implied_internal = True  # declaring "internal" replaces the implied one
        self._handlers: dict[str, Handler] = {}
        self._routes: dict[tuple[str, str], tuple[Handler, ...]] = {}
        self._policies: dict[str, tuple[Handler, int, int, retry.Retry]] = {}
        self._dead_hooks: list[Callable[[records.DeadLetter], Any]] = []
        self._rate_limits: dict[str, ratelimit.Limit] = {}
        self._http_options = options_mod.HttpOptions()
        self._schedules: dict[str, Schedule] = {}
        self._alerting: Alerting | None = None
        self._prepared = False

    # --- declaration ---------------------------------------------------------------------

    def source(self, name: str, source: sources_base.Source) -> sources_base.Source:
        """Mount ``source`` at ``POST /webhooks/{name}``."""
        if not _SOURCE_NAME.match(name):
            raise errors.ConfigError(
                f"source name {name!r}: use lowercase letters, digits, '-' and '_' (it is a URL path)"
            )
        if name in self._sources and not (name == "internal" and self._implied_internal):
            raise errors.ConfigError(f"source {name!r} is declared twice")
        self._implied_internal = self._implied_internal and name != "internal"
        if not isinstance(source, sources_base.Source):
            raise errors.ConfigError(f"source {name!r}: expected a sources.* object, got {source!r}")
        self._sources[name] = source
        self._prepared = False
        return source

    def on(
        self,
        source: str,
        event_type: str,
        *,
        schema: type[pydantic.BaseModel] | None = None,
        retry: retry.Retry | None = None,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        upcast: Mapping[int, schemas.Upcaster] | None = None,
        version_field: str = schemas.DEFAULT_VERSION_FIELD,
        cancel_on: Sequence[workflow.CancelOn] = (),
        **flow_options: Unpack[flow_mod.OnOptions],
    ) -> Callable[[F], F]:
        """Run the decorated function once for every accepted ``event_type`` event of ``source``.

        ``upcast={1: v1_to_v2, ...}`` (payloads of older ``version_field`` versions, none
        means 1, upcast to ``schema``'s first); ``cancel_on=[CancelOn(source, type, match=...)]``
        cancels its pending or waiting executions on a matching event; ``concurrency=`` ...
        ``singleton=``: flow control (SPEC 7).
        """
        if not all(isinstance(c, workflow.CancelOn) for c in cancel_on):
            raise errors.ConfigError(f"cancel_on= takes CancelOn(...) items, got {cancel_on!r}")
        flow = flow_mod.on_options(flow_options, _ON_PARAMS, f"@app.on({source!r}, {event_type!r})")
        if schema is not None and not (
            isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)
        ):
            raise errors.ConfigError(f"schema= must be a pydantic model class, got {schema!r}")
        if not timeout > 0:
            raise errors.ConfigError("timeout= must be a positive number of seconds")
        versioning = None
        if upcast is not None:
            if schema is None:
                raise errors.ConfigError("upcast= needs schema= (it upcasts to its version)")
            versioning = schemas.Versioning.build(upcast, version_field)

        def register(fn: F) -> F:
            handler_name = name or fn.__name__
            if handler_name in self._handlers:
                raise errors.ConfigError(
                    f"handler name {handler_name!r} is used twice; pass name= to tell them apart"
                )
            flow_mod.check_handler(flow, f"handler {handler_name!r}", schema, self._handlers.values())
            self._handlers[handler_name] = Handler(
                name=handler_name,
                source=source,
                event_type=event_type,
                fn=fn,
                schema=schema,
                retry=retry if retry is not None else _DEFAULT_RETRY,
                timeout=float(timeout),
                is_async=inspect.iscoroutinefunction(fn),
                versioning=versioning,
                cancel_on=tuple(cancel_on),
                flow=flow if flow.any else None,
            )
            self._routes.clear()
            return fn

        return register

    def on_dead(self, fn: F) -> F:
        """Call ``fn(dead: DeadLetter)`` once each time an execution goes dead.

        Runs in the process that moved the execution to dead, right after that is committed;
        an exception in the hook is logged and does not affect the execution.
        """
        if not callable(fn):
            raise errors.ConfigError(f"on_dead needs a function, got {fn!r}")
        self._dead_hooks.append(fn)
        return fn

    def cron(
        self,
        expr: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        overlap: Overlap | None = None,
        catchup: Catchup = "latest",
        catchup_window: timedelta = timedelta(hours=24),
        retry: retry.Retry | None = None,
        alert_after_failures: int | None = 3,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: flow_mod.Concurrency | int | None = None,
        priority: int | None = None,
        **unknown: Unpack[flow_mod.NoMoreOptions],
    ) -> Callable[[F], F]:
        """Run the decorated ``fn(ctx)`` at every fire of ``expr`` in ``timezone``, exactly once
        across every scheduler process (``ctx.scheduled_at`` is the fire time).

        ``expr`` has 5 fields, or 6 with seconds first; each fire is one execution under the
        normal retry policy. See ``docs/scheduling.md`` for overlap, catch-up and DST rules.
        ``concurrency=`` (fires running at once; they wait, in order) and ``priority=``: flow
        control (SPEC 7); with ``concurrency=``, ``overlap`` defaults to ``"allow"``.
        """
        flow_mod.unknown_options(unknown, _CRON_PARAMS, f"@app.cron({expr!r})")

        def register(fn: F) -> F:
            schedule_name: str = name if name else str(getattr(fn, "__name__", ""))
            cron_mod.check_name(schedule_name)
            where = f"schedule {schedule_name!r}"
            parsed = cron_mod.parse(expr, timezone, name=schedule_name)
            flow = flow_mod.cron_options(where, concurrency, priority)
            how: Overlap = overlap or ("allow" if concurrency is not None else "skip")
            schedule_plan.check_cron_options(
                where, how, catchup, catchup_window, alert_after_failures, timeout
            )
            if not callable(fn):
                raise errors.ConfigError(f"{where}: @app.cron decorates a function fn(ctx)")
            if schedule_name in self._handlers:
                raise errors.ConfigError(
                    f"handler name {schedule_name!r} is used twice; pass name= to tell them apart"
                )
            if flow is not None:
                flow_mod.check_handler(flow, where, None, self._handlers.values())
            self._handlers[schedule_name] = Handler(
                name=schedule_name, source="", event_type="", fn=fn, schema=None,
                retry=retry if retry is not None else _DEFAULT_RETRY, timeout=float(timeout),
                is_async=inspect.iscoroutinefunction(fn), kind="cron", flow=flow,
            )
            self._schedules[schedule_name] = Schedule(
                name=schedule_name, expression=expr, timezone=timezone, overlap=how,
                catchup=catchup, catchup_window=catchup_window,
                alert_after_failures=alert_after_failures, cron=parsed,
                flow=None if flow is None else flow.mark(schedule_name, None),
            )
            return fn

        return register

    def alerts(
        self,
        *channels: AlertChannel,
        window: timedelta = timedelta(minutes=5),
        group_wait: timedelta = timedelta(seconds=10),
    ) -> Alerting:
        """Send alerts to ``channels`` (``solo_os.alerts.slack/webhook/email/apprise``): when an
        execution goes dead, a schedule fails ``alert_after_failures`` times in a row, misses
        its fires, and when it recovers. One alert per key per ``window``, with a count."""
        if not channels:
            raise errors.ConfigError("app.alerts() needs at least one channel")
        seen: set[str] = set()
        for ch in channels:
            if not isinstance(ch, AlertChannel):
                raise errors.ConfigError(f"app.alerts(): expected an alerts.* channel, got {ch!r}")
            if ch.name in seen:
                raise errors.ConfigError(
                    f"alert channel {ch.name!r} is given twice; pass name= to tell them apart"
                )
            seen.add(ch.name)
        for what, value in (("window", window), ("group_wait", group_wait)):
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise errors.ConfigError(f"app.alerts(): {what}= must be a timedelta >= 0")
        self._alerting = Alerting(tuple(channels), window, group_wait)
        return self._alerting

    def rate_limit(
        self, key: str, *, rate: float, per: ratelimit.Per = "second", burst: float | None = None
    ) -> ratelimit.Limit:
        """Let ``ctx.http`` start at most ``rate`` calls per ``per`` to ``key``, across every
        worker process (a token bucket in the store; ``burst`` defaults to one second's worth).

        ``key`` is a host (``"api.stripe.com"``, or ``"host:port"``), matched against each
        call's URL, or any name (an API account) that calls name with ``rate_key=``.
        """
        try:
            limit = ratelimit.Limit(key, rate, per, burst)
        except ValueError as exc:
            raise errors.ConfigError(str(exc)) from None
        if key in self._rate_limits:
            raise errors.ConfigError(f"rate limit {key!r} is declared twice")
        self._rate_limits[key] = limit
        return limit

    def http(
        self,
        *,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        max_wait: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_connections: int = 100,
    ) -> options_mod.HttpOptions:
        """Set how ``ctx.http`` calls are made (see ``options_mod.HttpOptions``)."""
        try:
            self._http_options = options_mod.HttpOptions(
                timeout=timeout, connect_timeout=connect_timeout, max_wait=max_wait,
                retries=retries, backoff=backoff, max_backoff=max_backoff,
                max_connections=max_connections,
            )
        except ValueError as exc:
            raise errors.ConfigError(str(exc)) from None
        return self._http_options

    def cancel_rules(
        self, source: str, event_type: str, document: Any
    ) -> tuple[workflow.CancelRule, ...]:
        """What an accepted event of ``(source, event_type)`` cancels (the handlers' ``cancel_on``)."""
        with_rules = ((h.name, h.cancel_on) for h in self._handlers.values() if h.cancel_on)
        return workflow.cancel_rules(with_rules, source, event_type, document)

    def new_event(
        self, source: str, event_type: str, data: Any, *, key: str, correlation_id: str,
        received_at: datetime, handlers: Sequence[Handler] | None = None,
    ) -> records.NewEvent:
        """An accepted event sent from inside with its executions (``handlers``, or those of
        ``(source, event_type)``, whose schemas' errors raise ``PayloadError``)."""
        if source not in self._sources:
            raise errors.ConfigError(f"no source {source!r} in this app")
        if handlers is None and (problems := self.validate(source, event_type, data)):
            raise errors.PayloadError(problems)
        chosen = self.handlers_for(source, event_type) if handlers is None else handlers
        return workflow.new_event(
            source=source, event_type=event_type, data=data, key=key,
            correlation_id=correlation_id, received_at=received_at,
            executions=[(h.name, self.policy(h).max_attempts or 1) for h in chosen],
            cancels=self.cancel_rules(source, event_type, data),
            marks=[h.flow_mark(self._sources[source].payload(data)) for h in chosen],
        )

    async def send(
        self, event_type: str, data: Any, *, source: str = "internal", key: str | None = None
    ) -> UUID:
        """Store an event (``internal`` by default) from outside a handler (a script); the
        app's workers run its handlers. Returns its id (the stored one for a repeated ``key``)."""
        from solo_os import store as store_mod

        store, key = store_mod.connect(self.settings.database_url), key or f"send:{ids.uuid7()}"
        try:
            now = store_mod.utcnow()
            event = self.new_event(source, event_type, data, key=key, correlation_id=key, received_at=now)
            return (await store.ingest([event]))[0].event_id
        finally:
            await store.close()

    # --- lookup --------------------------------------------------------------------------

    @property
    def rate_limits(self) -> Mapping[str, ratelimit.Limit]:
        return self._rate_limits

    @property
    def http_options(self) -> options_mod.HttpOptions:
        return self._http_options

    @property
    def schedules(self) -> Mapping[str, Schedule]:
        return self._schedules

    @property
    def alerting(self) -> Alerting | None:
        return self._alerting

    @property
    def dead_hooks(self) -> tuple[Callable[[records.DeadLetter], Any], ...]:
        return tuple(self._dead_hooks)

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load()
        return self._settings

    @property
    def sources(self) -> Mapping[str, sources_base.Source]:
        return self._sources

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return self._handlers

    def handlers_for(self, source: str, event_type: str) -> tuple[Handler, ...]:
        """Every handler of ``(source, event_type)``, exact matches and ``"*"``, in declaration order."""
        key = (source, event_type)
        found = self._routes.get(key)
        if found is None:
            found = tuple(
                h for h in self._handlers.values()
                if h.source == source and h.event_type in (event_type, "*")
            )
            self._routes[key] = found
        return found

    def policy(self, handler: Handler) -> retry.Retry:
        """The handler's retry policy with the app's defaults filled in (worked out again only
        when the handler or those defaults change: every delivery asks)."""
        s = self.settings
        attempts, delay_ms = s.max_retry_attempts, s.retry_base_delay_ms
        known = self._policies.get(handler.name)
        if known is None or known[:3] != (handler, attempts, delay_ms):
            resolved = handler.retry.resolved(attempts, delay_ms / 1000.0)
            known = self._policies[handler.name] = (handler, attempts, delay_ms, resolved)
        return known[3]

    def policy_default(self) -> retry.Retry:
        """The app's default retry policy (for executions whose handler is gone)."""
        s = self.settings
        return _DEFAULT_RETRY.resolved(s.max_retry_attempts, s.retry_base_delay_ms / 1000.0)

    # --- start-up ------------------------------------------------------------------------

    def prepare(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Resolve settings and secrets; raise ``ConfigError`` with every problem.

        Returns warnings (e.g. a source with verification turned off).
        """
        problems: list[str] = []
        warnings: list[str] = []
        try:
            _ = self.settings
        except errors.ConfigError as exc:
            problems.extend(exc.problems)
        env = config.environ() if env is None else env
        for name, src in self._sources.items():
            problems.extend(src.bind(name, env))
            if not src.verify_signatures:
                warnings.append(f"source {name!r} accepts UNVERIFIED deliveries (verify=False)")
        for h in self._handlers.values():
            if h.kind == "event" and h.source not in self._sources:
                problems.append(f"handler {h.name!r} listens to unknown source {h.source!r}")
        for channel in self._alerting.channels if self._alerting else ():
            problems.extend(channel.bind(env))
        if problems:
            raise errors.ConfigError(problems)
        self._prepared = True
        return warnings

    # --- validation ----------------------------------------------------------------------

    def validate(self, source: str, event_type: str, document: Any) -> list[dict[str, Any]]:
        """Schema errors of ``document`` for every handler that would run; [] when valid."""
        src = self._sources[source]
        found: list[dict[str, Any]] = []
        seen: set[tuple[type[pydantic.BaseModel], int]] = set()
        payload = src.payload(document)
        for h in self.handlers_for(source, event_type):
            if h.schema is None or (h.schema, id(h.versioning)) in seen:
                continue
            seen.add((h.schema, id(h.versioning)))
            try:
                h.load(payload)
            except pydantic.ValidationError as exc:
                found.extend(schema_errors(exc, h.schema.__name__))
            except errors.PayloadError as exc:  # an older version that cannot be upcast
                found.extend(exc.details)
        return found


def schema_errors(exc: pydantic.ValidationError, schema: str) -> list[dict[str, Any]]:
    """pydantic's errors as JSON, without the input values (they may be sensitive)."""
    return [
        {"schema": schema, "loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


_DEFAULT_RETRY = retry.Retry()
_ON_PARAMS = (*list(inspect.signature(App.on).parameters)[3:-1], *flow_mod.ON_OPTIONS)
_CRON_PARAMS = list(inspect.signature(App.cron).parameters)[2:-1]
