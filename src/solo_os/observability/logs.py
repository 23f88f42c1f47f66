"""Structured logs: JSON lines (OpenTelemetry-compatible field names) or a console form.

Context (correlation id, event, execution) is bound through contextvars, so every line a
delivery or an execution causes carries it. Known secret values and secret-looking keys are
redacted before anything is rendered.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from solo_os.observability import tracing

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_SECRET_KEYS = ("secret", "signature", "authorization", "password", "token", "cookie", "api_key")
REDACTED = "[redacted]"
# Fields solo-os itself fills with values it made (ids, numbers, levels, times): nothing a
# user, a sender or a secret can put there, so the redactor does not walk them.
_OWN_FIELDS = frozenset(
    {"timestamp", "level", "service", "execution_id", "event_id", "attempt", "duration_ms",
     "trace_id", "span_id", "worker_id", "retry_in", "logger"}
)


class Redactor:
    """Hides secrets before a log line is rendered.

    - values under secret-looking keys (``*secret*``, ``*signature*``, ``authorization``, ...);
    - values under the payload fields an app declares sensitive (``App(redact=[...])``), at
      any depth of nested dicts and lists;
    - any occurrence of a known secret value (every source's secrets) inside any string.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._keys: set[str] = set()
        self._verdicts: dict[str, bool] = {}  # key -> hidden? (a log line's keys repeat)

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if len(s) >= 4)

    def add_keys(self, *keys: str) -> None:
        self._keys.update(k.lower() for k in keys)
        self._verdicts.clear()

    def _hidden(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            lowered = key.lower()
            verdict = lowered in self._keys or any(s in lowered for s in _SECRET_KEYS)
            if len(self._verdicts) < 10_000:  # payload keys are the user's: bounded memory
                self._verdicts[key] = verdict
        return verdict

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and self._hidden(k) else self._clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # Once per log line: the common cases (a known key, a plain string) inline.
        verdicts = self._verdicts
        secrets = self._secrets
        for key, value in event.items():
            if key in _OWN_FIELDS:
                continue
            hidden = verdicts.get(key)
            if hidden if hidden is not None else self._hidden(key):
                event[key] = REDACTED
            elif type(value) is str:
                for secret in secrets:
                    if secret in value:
                        event[key] = value = value.replace(secret, REDACTED)
            elif isinstance(value, str | dict | list | tuple):
                event[key] = self._clean(value)
        return event


redactor = Redactor()


_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX
_FIELD_OF: dict[contextvars.ContextVar[Any], str] = {}  # a context variable -> its log field, or ""


def merge_contextvars(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``structlog.contextvars.merge_contextvars``, the same fields (what ``bind_contextvars``
    bound, unless the line names them itself) at a third of the cost: each variable's field
    name is worked out once, not on every line."""
    for var, value in contextvars.copy_context().items():
        field = _FIELD_OF.get(var)
        if field is None:
            name = var.name
            field = name[len(_PREFIX) :] if name.startswith(_PREFIX) else ""
            if len(_FIELD_OF) < 10_000:  # variables are made by code, not by data: bounded anyway
                _FIELD_OF[var] = field
        if field and value is not Ellipsis:
            event.setdefault(field, value)
    return event


_second: tuple[int, str] = (-1, "")  # the last whole second stamped, and its text


def timestamp(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp``: the time in UTC as ISO 8601 (``2026-12-05T06:30:00.123456Z``), the text
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes; the date and time of day are
    formatted once per second, not once per line."""
    global _second  # one cached pair, replaced whole (threads log too)
    ns = time.time_ns()
    sec, us = divmod(ns // 1000, 1_000_000)
    cached, text = _second
    if cached != sec:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (sec, text)
    event["timestamp"] = f"{text}.{us:06d}Z" if us else f"{text}Z"
    return event


def _service(service: str) -> structlog.types.Processor:
    def add(_l: Any, _n: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", service)
        return event

    return add


class _Stdout:
    """Writes to whatever ``sys.stdout`` is at the time (a test's capture, a redirect)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure(
    level: str = "info", fmt: str = "json", service: str = "solo-os", *, cache: bool = False
) -> None:
    """Set up structlog (and route the standard library's logging, e.g. uvicorn's, through it).

    ``cache`` freezes each logger's configuration on first use (faster; what the CLI's long-
    running processes want). Left off, a later ``configure`` or ``capture_logs`` still applies
    to every logger, which in-process embedders and tests need.
    """
    shared: list[structlog.types.Processor] = [
        merge_contextvars,
        structlog.processors.add_log_level,
        timestamp,
        _service(service),
        tracing.add_ids,
        redactor,
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Libraries log SQL parameters and request bodies at debug: payloads must not leak through
    # them, whatever LOG_LEVEL says (LOG_LEVEL is for solo-os's own events).
    for noisy in (
        "uvicorn.access", "sqlalchemy", "alembic", "aiosqlite", "asyncpg", "httpx", "httpcore",
        "asyncio", "watchfiles", "multipart", "botocore", "urllib3",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str = "solo_os") -> Any:
    return structlog.get_logger(name)
