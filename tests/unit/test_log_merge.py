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


def test_timestamp_is_structlogs_iso_utc_text(monkeypatch: Any) -> None:
    """The cached-second ``timestamp`` writes what ``TimeStamper(fmt="iso", utc=True)`` wrote,
    a whole second included (no fraction, as ``isoformat`` has none), across seconds."""
    import datetime as dt
    import time

    stamps = [
        1_796_450_000_123_456_789,  # 2026-12-05
        1_796_450_000_999_999_999,
        1_796_450_001_000_000_000,  # a whole second
        1_796_450_001_000_001_000,
        1_796_536_399_500_000_000,  # another day
    ]
    for ns in stamps:
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        sec, us = divmod(ns // 1000, 1_000_000)
        want = dt.datetime.fromtimestamp(sec, dt.UTC).replace(microsecond=us).isoformat()
        assert logs.timestamp(None, "info", {})["timestamp"] == want.replace("+00:00", "Z")
