"""Flow control options (SPEC section 7): what a handler declares, validated at start, and how a
delivery's input becomes the keys stored with its execution. Pure: no I/O.

A key is a dotted path into the validated input (``"customer_id"``, ``"data.object.customer"``)
or a callable of the input returning a ``str``/``int``. It is evaluated once, when the delivery
is accepted; an input it cannot be evaluated on yields a ``FlowMark`` carrying the error, and
the execution is stored ``dead`` with it (replayable after a fix) rather than losing anything.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypedDict

from solo_os import errors
from solo_os.core.records import FlowMark

Key = str | Callable[[Any], Any] | None
Seconds = timedelta | float | int
SingletonMode = Literal["skip", "cancel"]
SEP = "\x1f"  # between a stored key's group and its value (never in a handler or scope name)
MAX_PRIORITY = 600
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
MAX_KEY = 400  # characters of a key's value kept (the column holds the group too)


def seconds(value: Seconds, what: str) -> float:
    """``value`` (a ``timedelta`` or seconds) as positive seconds, or a ``ConfigError``."""
    s = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s <= 0:
        raise errors.ConfigError(f"{what} must be a positive timedelta or number of seconds, got {value!r}")
    return float(s)


def _limit(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _key(key: Key, what: str) -> None:
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not _PATH.match(key):
        raise errors.ConfigError(
            f"{what} key= must be a dotted path into the payload (like 'customer_id' or "
            f"'data.object.customer') or a callable, got {key!r}"
        )


def unknown_options(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """A ``ConfigError`` naming each option of ``given`` not in ``allowed``, with the closest
    allowed name (a misspelt option must not pass, nor surface as Python's ``TypeError``)."""
    known = list(allowed)
    problems = []
    for name in given:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(
            f"{where}: unknown option {name!r}{hint} (allowed: {', '.join(known)})"
        )
    if problems:
        raise errors.ConfigError(problems)


def _checked_init(cls: type[Any]) -> type[Any]:
    """Make ``cls(...)`` with an unknown, missing or extra argument raise ``ConfigError``
    (what was given, what is allowed, a close match) instead of ``TypeError``."""
    init = cls.__init__
    signature = inspect.signature(init)
    names = [p for p in signature.parameters if p != "self"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        unknown_options(kwargs, names, f"{cls.__name__}(...)")
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise errors.ConfigError(
                f"{cls.__name__}(...): {exc} (it takes {', '.join(names)})"
            ) from None
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    setattr(cls, "__init__", __init__)  # noqa: B010 (mypy forbids assigning a method)
    return cls


@_checked_init
@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` running executions per key value (per handler without a key); FIFO
    per key; handlers naming the same ``scope`` share the limit."""

    limit: int
    key: Key = None
    scope: str | None = None

    def __post_init__(self) -> None:
        _limit(self.limit, "Concurrency limit")
        _key(self.key, "Concurrency")
        if self.scope is not None and (not isinstance(self.scope, str) or not self.scope.strip()
                                       or SEP in self.scope):
            raise errors.ConfigError(f"Concurrency scope= must be a non-empty name, got {self.scope!r}")


@_checked_init
@dataclass(frozen=True)
class Throttle:
    """At most ``limit`` (+ ``burst``) starts per ``period`` per key; the excess waits in order."""

    limit: int
    period: Seconds
    key: Key = None
    burst: int | None = None

    def __post_init__(self) -> None:
        _limit(self.limit, "Throttle limit")
        seconds(self.period, "Throttle period")
        _key(self.key, "Throttle")
        if self.burst is not None and (isinstance(self.burst, bool) or not isinstance(self.burst, int)
                                       or self.burst < 0):
            raise errors.ConfigError(f"Throttle burst must be an integer >= 0, got {self.burst!r}")

    @property
    def capacity(self) -> int:
        return self.limit + (self.burst or 0)


@_checked_init
@dataclass(frozen=True)
class RateLimit:
    """Over ``limit`` events per ``period`` per key, the new execution is ``skipped``."""

    limit: int
    period: Seconds
    key: Key = None

    def __post_init__(self) -> None:
        _limit(self.limit, "RateLimit limit")
        seconds(self.period, "RateLimit period")
        _key(self.key, "RateLimit")


@_checked_init
@dataclass(frozen=True)
class Debounce:
    """Run once, ``period`` after the key's last event (at the latest ``timeout`` after its
    first), with the latest event; the superseded executions are ``skipped``."""

    period: Seconds
    key: Key = None
    timeout: Seconds | None = None

    def __post_init__(self) -> None:
        period = seconds(self.period, "Debounce period")
        _key(self.key, "Debounce")
        if self.timeout is not None and seconds(self.timeout, "Debounce timeout") < period:
            raise errors.ConfigError("Debounce timeout must be at least its period")


@_checked_init
@dataclass(frozen=True)
class Batch:
    """The handler receives a list: up to ``max_size`` events, or what arrived within
    ``timeout`` of the first; one execution per batch."""

    max_size: int
    timeout: Seconds
    key: Key = None

    def __post_init__(self) -> None:
        _limit(self.max_size, "Batch max_size")
        seconds(self.timeout, "Batch timeout")
        _key(self.key, "Batch")


@_checked_init
@dataclass(frozen=True)
class Singleton:
    """At most one execution per key pending or running: a new one is ``skipped``
    (``mode="skip"``), or the existing one is ``cancelled`` in its favour (``"cancel"``)."""

    key: Key = None
    mode: SingletonMode = "skip"

    def __post_init__(self) -> None:
        _key(self.key, "Singleton")
        if self.mode not in ("skip", "cancel"):
            raise errors.ConfigError(f"Singleton mode must be 'skip' or 'cancel', got {self.mode!r}")


Priority = int | Callable[[Any], int] | None


class OnOptions(TypedDict, total=False):
    """The flow-control keyword arguments of ``@app.on(...)`` (``ON_OPTIONS``)."""

    concurrency: Concurrency | None
    throttle: Throttle | None
    rate_limit: RateLimit | None
    debounce: Debounce | None
    batch: Batch | None
    priority: Priority
    singleton: Singleton | None


ON_OPTIONS = ("concurrency", "throttle", "rate_limit", "debounce", "batch", "priority", "singleton")


@dataclass(frozen=True)
class Options:
    """A handler's flow-control options, checked together."""

    concurrency: Concurrency | None = None
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: Priority = None
    singleton: Singleton | None = None

    def check(self, where: str) -> None:
        """Raise ``ConfigError`` for wrong types and combinations that cannot hold together."""
        for name, cls in (("concurrency", Concurrency), ("throttle", Throttle),
                          ("rate_limit", RateLimit), ("debounce", Debounce), ("batch", Batch),
                          ("singleton", Singleton)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise errors.ConfigError(f"{where}: {name}= takes solo_os.{cls.__name__}(...), got {value!r}")
        if not callable(self.priority) and self.priority is not None:
            _priority(self.priority, where)
        grouping = [n for n in ("debounce", "batch", "singleton") if getattr(self, n) is not None]
        if len(grouping) > 1:
            raise errors.ConfigError(f"{where}: {' and '.join(grouping)} cannot be combined")

    @property
    def any(self) -> bool:
        return any(getattr(self, f) is not None for f in self.__dataclass_fields__)

    @property
    def claimed_apart(self) -> bool:
        """Whether executions are claimed by the flow claim (limits or order at claim time)."""
        return any(x is not None for x in (self.concurrency, self.throttle, self.priority, self.batch))

    def mark(self, handler: str, value: Any) -> FlowMark:
        """The keys and decisions stored with an execution of ``handler`` for input ``value``."""
        try:
            return self._mark(handler, value)
        except _KeyFailed as exc:
            return FlowMark(error=str(exc))

    def _mark(self, handler: str, value: Any) -> FlowMark:
        c, t = self.concurrency, self.throttle
        conc = None if c is None else f"{c.scope or handler}{SEP}{evaluate(c.key, value)}"
        return FlowMark(
            flow_key=(conc or "") if self.claimed_apart else None,
            throttle_key=None if t is None else f"{handler}{SEP}{evaluate(t.key, value)}",
            priority=self._priority(value),
            rate_limit=None if self.rate_limit is None else (
                f"r{SEP}{handler}{SEP}{evaluate(self.rate_limit.key, value)}",
                self.rate_limit.limit, seconds(self.rate_limit.period, "period"),
            ),
            singleton=None if self.singleton is None else (
                f"s{SEP}{handler}{SEP}{evaluate(self.singleton.key, value)}", self.singleton.mode
            ),
            debounce=None if self.debounce is None else (
                f"d{SEP}{handler}{SEP}{evaluate(self.debounce.key, value)}",
                seconds(self.debounce.period, "period"),
                None if self.debounce.timeout is None else seconds(self.debounce.timeout, "timeout"),
            ),
            batch=None if self.batch is None else (
                f"b{SEP}{handler}{SEP}{evaluate(self.batch.key, value)}",
                self.batch.max_size, seconds(self.batch.timeout, "timeout"),
            ),
        )

    def _priority(self, value: Any) -> int:
        if self.priority is None:
            return 0
        if not callable(self.priority):
            return int(self.priority)
        try:
            got = self.priority(value)
        except Exception as exc:
            raise _KeyFailed(f"priority callable failed: {type(exc).__name__}: {exc}") from exc
        try:
            return _priority(got, "priority")
        except errors.ConfigError as exc:
            raise _KeyFailed(str(exc)) from exc


def _priority(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise errors.ConfigError(
            f"{where}: priority must be an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}, got {value!r}"
        )
    return value


class _KeyFailed(Exception):
    """A key could not be evaluated on an input."""


def evaluate(key: Key, value: Any) -> str:
    """The key's value for ``value`` (the validated model or the dict) as a string."""
    if key is None:
        return ""
    if callable(key):
        name = getattr(key, "__name__", repr(key))
        try:
            got = key(value)
        except Exception as exc:
            raise _KeyFailed(f"key {name} failed: {type(exc).__name__}: {exc}") from exc
        return _as_key(got, f"key {name}")
    current = value
    for part in key.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                raise _KeyFailed(f"key {key!r}: {part!r} is missing from the payload")
            current = current[part]
        elif hasattr(current, part) and not part.startswith("_"):
            current = getattr(current, part)
        else:
            raise _KeyFailed(f"key {key!r}: {part!r} is missing from the payload")
    return _as_key(current, f"key {key!r}")


def _as_key(got: Any, what: str) -> str:
    if got is None:
        raise _KeyFailed(f"{what} is null in the payload")
    if isinstance(got, bool) or (not isinstance(got, str | int | float) and not hasattr(got, "hex")):
        raise _KeyFailed(f"{what} gave {type(got).__name__}, not a str or int")
    return str(got)[:MAX_KEY]


def check_path(key: Key, schema: Any, where: str) -> None:
    """At start: a dotted path must name fields of ``schema`` (a pydantic model) as far as the
    schema's nested models go."""
    if not isinstance(key, str) or schema is None:
        return
    model = schema
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return  # a dict or an untyped value: checked per delivery
        if part not in fields:
            raise errors.ConfigError(
                f"{where}: key {key!r}: {model.__name__} has no field {part!r}"
            )
        model = fields[part].annotation


def check_handler(options: Options, where: str, schema: Any, others: Any) -> None:
    """Everything checkable at registration: option types, combinations, key paths against the
    schema, and one limit per concurrency scope across handlers."""
    options.check(where)
    for name in ("concurrency", "throttle", "rate_limit", "debounce", "batch", "singleton"):
        opt = getattr(options, name)
        if opt is not None:
            check_path(opt.key, schema, f"{where} {name}")
    c = options.concurrency
    if c is None or c.scope is None:
        return
    for other in others:
        oc = other.flow.concurrency if other.flow is not None else None
        if oc is not None and oc.scope == c.scope and oc.limit != c.limit:
            raise errors.ConfigError(
                f"{where}: concurrency scope {c.scope!r} has limit {oc.limit} in handler "
                f"{other.name!r}; every handler of a scope must give the same limit"
            )


@dataclass(frozen=True)
class Plan:
    """What the flow claim needs to know of the app: each concurrency group's limit (a scope,
    or a handler's name), each throttled handler's (capacity, period), and whether any handler
    orders by priority."""

    limits: Mapping[str, int]
    throttles: Mapping[str, tuple[int, float]]
    priority: bool
    batch: bool = False

    def limit_of(self, flow_key: str) -> int | None:
        return self.limits.get(flow_key.split(SEP, 1)[0])

    def throttle_of(self, throttle_key: str) -> tuple[int, float] | None:
        return self.throttles.get(throttle_key.split(SEP, 1)[0])


def plan(handlers: Any) -> Plan | None:
    """The ``Plan`` of ``handlers`` (``App.handlers.values()``), or None when none is
    claimed apart (the worker then only ever runs the plain claim)."""
    limits: dict[str, int] = {}
    throttles: dict[str, tuple[int, float]] = {}
    priority = batch = False
    apart = False
    for h in handlers:
        o: Options | None = h.flow
        if o is None or not o.claimed_apart:
            continue
        apart = True
        if o.concurrency is not None:
            limits[o.concurrency.scope or h.name] = o.concurrency.limit
        if o.throttle is not None:
            throttles[h.name] = (o.throttle.capacity, seconds(o.throttle.period, "period"))
        priority = priority or o.priority is not None
        batch = batch or o.batch is not None
    return Plan(limits, throttles, priority, batch) if apart else None


class NoMoreOptions(TypedDict, total=False):
    """No further keyword arguments: ``**unknown: Unpack[NoMoreOptions]`` lets type checkers
    flag a misspelt option while the runtime names it in a ``ConfigError``."""


def on_options(given: Mapping[str, Any], allowed: Iterable[str], where: str) -> Options:
    """The flow options of ``@app.on(...)``; an unknown name is a ``ConfigError``."""
    unknown_options(given, allowed, where)
    return Options(**given)


def cron_options(where: str, concurrency: Concurrency | int | None, priority: Any) -> Options | None:
    """The flow options of ``@app.cron(..., concurrency=, priority=)``: a fire has no payload,
    so no key and no priority callable; ``concurrency=1`` is ``Concurrency(1)``."""
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        concurrency = Concurrency(concurrency)
    if concurrency is not None and not isinstance(concurrency, Concurrency):
        raise errors.ConfigError(
            f"{where}: concurrency= takes an integer >= 1 or solo_os.Concurrency(limit, scope=...), "
            f"got {concurrency!r}"
        )
    if concurrency is not None and concurrency.key is not None:
        raise errors.ConfigError(
            f"{where}: a schedule's fire has no payload, so Concurrency key= does not apply "
            "(the limit is per schedule; scope= shares it with other handlers)"
        )
    if callable(priority):
        raise errors.ConfigError(f"{where}: priority= of a schedule is an integer (a fire has no input)")
    options = Options(concurrency=concurrency, priority=priority)
    options.check(where)
    return options if options.any else None
