"""solo-os's own ``merge_contextvars`` (a cheaper copy of structlog's, issue 21) merges exactly
what structlog's does: bound fields, not the ones unbound since, never over the line's own."""

from __future__ import annotations

import contextvars
from typing import Any

import structlog

from solo_os.observability import logs


def _both(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = dict(logs.merge_contextvars(None, "info", dict(event)))
    theirs = dict(structlog.contextvars.merge_contextvars(None, "info", dict(event)))
    return ours, theirs


def test_same_fields_as_structlogs_merge() -> None:
    def run() -> None:
        other: contextvars.ContextVar[str] = contextvars.ContextVar("not_structlog")
        other.set("ignored")
        structlog.contextvars.bind_contextvars(execution_id="e-1", attempt=2, gone="x")
        structlog.contextvars.unbind_contextvars("gone")
        ours, theirs = _both({"event": "execution.succeeded", "attempt": 3})
        assert ours == theirs == {"event": "execution.succeeded", "attempt": 3, "execution_id": "e-1"}
        structlog.contextvars.bind_contextvars(gone="back")  # a variable seen before, set again
        ours, theirs = _both({"event": "again"})
        assert ours == theirs == {"event": "again", "execution_id": "e-1", "attempt": 2, "gone": "back"}

    contextvars.copy_context().run(run)  # this test's bindings stay in its own context
    ours, theirs = _both({"event": "outside"})
    assert ours == theirs and "execution_id" not in ours
