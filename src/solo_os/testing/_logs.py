"""Log lines captured in a test, as production writes them (context merged, secrets redacted)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog

from solo_os.observability import logs as slog


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
