"""The attempt's logger (``attempt.AttemptLog``, issue 21): each line carries the attempt's
fields, the line's own keywords winning, exactly as a logger bound to them; nothing is bound
for plain lines, and whatever else is asked of it goes to a logger bound once."""

from __future__ import annotations

from typing import Any

import pytest

from solo_os.runtime import attempt


class Fake:
    def __init__(
        self, fields: dict[str, Any] | None = None, binds: list[dict[str, Any]] | None = None
    ) -> None:
        self.fields = fields or {}
        self.lines: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = []
        self.binds = binds if binds is not None else []

    def _line(self, level: str) -> Any:
        return lambda event=None, *args, **kw: self.lines.append((level, event, args, {**self.fields, **kw}))

    def __getattr__(self, name: str) -> Any:
        return self._line(name)

    def bind(self, **kw: Any) -> Fake:
        self.binds.append(kw)
        bound = Fake({**self.fields, **kw}, self.binds)
        bound.lines = self.lines
        return bound


def test_lines_carry_the_fields_and_bind_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake()
    monkeypatch.setattr(attempt, "log", fake)
    fields = {"execution_id": "e-1", "attempt": 1, "handler": "h"}
    hlog = attempt.AttemptLog(fields)
    hlog.info("execution.succeeded", duration_ms=1.5)
    hlog.warning("execution.failed", attempt=9)  # the line's own keyword wins
    hlog.error("x %s", "y")
    hlog.debug("d")
    assert fake.binds == []  # plain lines bind nothing
    assert fake.lines == [
        ("info", "execution.succeeded", (), {**fields, "duration_ms": 1.5}),
        ("warning", "execution.failed", (), {**fields, "attempt": 9}),
        ("error", "x %s", ("y",), fields),
        ("debug", "d", (), fields),
    ]
    assert fields == {"execution_id": "e-1", "attempt": 1, "handler": "h"}  # never changed
    # Anything else: a logger bound to the fields, once.
    hlog.critical("c")
    more = hlog.bind(step="s")
    more.info("in step")
    assert fake.binds == [fields, {"step": "s"}]
    assert fake.lines[-2:] == [
        ("critical", "c", (), fields),
        ("info", "in step", (), {**fields, "step": "s"}),
    ]
