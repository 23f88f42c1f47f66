"""Handler log lines: what ``ctx.log`` emits during one attempt, kept for the dashboard.

``recording(logger)`` wraps the logger a handler gets as ``ctx.log``: every line it emits still
goes to the process's logs as before, and a copy goes into the attempt's buffer, redacted by the
same ``logging.redactor`` as the JSON logs (secret-looking keys, the app's ``redact`` fields,
known secret values). The buffer is bounded: at most ``MAX_LINES`` lines of at most
``MAX_LINE_CHARS`` characters each; what is cut is counted in a last line. ``flush`` writes the
buffer of the current execution's task to the store when the attempt ends.

The buffer lives in a context variable set in the execution's own task, so concurrent
executions never share one, and a plain ``def`` handler (run in a thread that copies the
context) records into its execution's buffer too.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import structlog

from solo_os import errors
from solo_os.observability import logs as logging_mod

if TYPE_CHECKING:  # the store is not loaded with a handler's context
    from solo_os.store import ports

MAX_LINES = 200
MAX_LINE_CHARS = 2000
_LEVELS = {
    "debug": "debug",
    "info": "info",
    "msg": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}
_NUMERIC = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_BINDERS = ("bind", "new", "unbind", "try_unbind")

log = structlog.get_logger("solo_os.worker")


@dataclass(frozen=True)
class Line:
    seq: int
    at: datetime
    level: str
    message: str
    fields: dict[str, Any] | None


@dataclass
class Buffer:
    """One attempt's lines (thread-safe: a sync handler appends from its thread)."""

    lines: list[Line] = field(default_factory=list)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, level: str, message: Any, fields: dict[str, Any]) -> None:
        with self._lock:
            if len(self.lines) >= MAX_LINES:
                self.dropped += 1
                return
            seq = len(self.lines)
        line = _line(seq, level, message, fields)
        with self._lock:
            self.lines.append(line)

    def final(self) -> list[Line]:
        with self._lock:
            lines = list(self.lines)
            if self.dropped:
                lines.append(
                    Line(
                        len(lines),
                        datetime.now(UTC),
                        "warning",
                        f"{self.dropped} more line(s) not kept (at most {MAX_LINES} per attempt)",
                        None,
                    )
                )
            return lines


CURRENT: contextvars.ContextVar[Buffer | None] = contextvars.ContextVar("solo_os_log_capture", default=None)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"


def _line(seq: int, level: str, message: Any, fields: dict[str, Any]) -> Line:
    event: dict[str, Any] = {"event": str(message), **fields}
    if event.pop("exc_info", None) or level == "exception":
        exc = sys.exc_info()[1]
        if exc is not None:
            event["exception"] = f"{type(exc).__name__}: {exc}"
    event = dict(logging_mod.redactor(None, level, event))
    text = _clip(str(event.pop("event", "")))
    kept: dict[str, Any] | None = None
    if event:
        encoded = orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        if len(encoded) + len(text) > MAX_LINE_CHARS:
            kept = {"truncated": _clip(encoded[: max(0, MAX_LINE_CHARS - len(text))])}
        else:
            kept = orjson.loads(encoded)
    return Line(seq, datetime.now(UTC), _LEVELS.get(level, "info"), text, kept)


class Recorder:
    """A structlog logger that also records what it emits into the attempt's buffer."""

    def __init__(self, logger: Any, buffer: Buffer, bound: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._buffer = buffer
        self._bound = bound or {}

    def _enabled(self, level: str) -> bool:
        check = getattr(self._logger, "is_enabled_for", None)
        return True if check is None else bool(check(_NUMERIC[_LEVELS.get(level, "info")]))

    def _record(self, level: str, event: Any, kw: dict[str, Any]) -> None:
        if self._enabled(level):
            self._buffer.add(level, event, {**self._bound, **kw})

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._logger, name)
        plain = name[1:] if name.startswith("a") and name[1:] in _LEVELS else name
        if plain in _LEVELS:

            def emit(event: Any = None, *args: Any, **kw: Any) -> Any:
                self._record(plain, event % args if args and isinstance(event, str) else event, kw)
                return target(event, *args, **kw)

            return emit
        if name == "log":

            def emit_at(level: int, event: Any = None, *args: Any, **kw: Any) -> Any:
                named = {v: k for k, v in _NUMERIC.items()}.get(level, "info")
                self._record(named, event, kw)
                return target(level, event, *args, **kw)

            return emit_at
        if name in _BINDERS:

            def rebind(*args: Any, **kw: Any) -> Recorder:
                bound = dict(self._bound)
                if name == "bind":
                    bound.update(kw)
                elif name == "new":
                    bound = dict(kw)
                else:
                    for key in args:
                        bound.pop(key, None)
                return Recorder(target(*args, **kw), self._buffer, bound)

            return rebind
        return target

    def __repr__(self) -> str:
        return f"<Recorder of {self._logger!r}>"


def recording(logger: Any) -> Recorder:
    """``logger`` recording into a new buffer, made the current task's."""
    buffer = Buffer()
    CURRENT.set(buffer)
    return Recorder(logger, buffer)


async def flush(store: ports.LogPort, execution_id: UUID, attempt: int) -> None:
    """Write the current task's captured lines for this attempt (nothing if it has none)."""
    buffer = CURRENT.get()
    if buffer is None:
        return
    CURRENT.set(None)
    lines = buffer.final()
    if not lines:
        return
    try:
        await store.save_logs(execution_id, attempt, lines)
    except errors.StoreError as exc:
        log.warning("execution.logs_unsaved", execution_id=str(execution_id), error=str(exc))
