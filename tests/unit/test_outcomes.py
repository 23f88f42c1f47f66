"""``runtime.outcomes.until_stored``: an unavailable store is waited out, a refusal is not."""

from __future__ import annotations

import pytest
import structlog

from solo_os import errors
from solo_os.runtime import outcomes


async def test_unavailable_writes_are_retried_until_they_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "FIRST_DELAY", 0.001)
    calls: list[int] = []

    async def write() -> None:
        calls.append(1)
        if len(calls) < 5:
            raise errors.StoreUnavailable("store unavailable: ConnectionRefusedError")

    with structlog.testing.capture_logs() as logs:
        await outcomes.until_stored(write, structlog.get_logger("t"))
    assert len(calls) == 5
    events = [entry["event"] for entry in logs]
    assert events == ["execution.outcome_held", "execution.outcome_written"]


async def test_a_refused_write_is_not_retried() -> None:
    calls: list[int] = []

    async def write() -> None:
        calls.append(1)
        raise errors.StoreError("store error: CheckViolationError")

    with pytest.raises(errors.StoreError):
        await outcomes.until_stored(write, structlog.get_logger("t"))
    assert len(calls) == 1
