"""A clock that moves only when a test moves it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """The time the runtime sees: frozen until ``advance`` or ``set`` moves it forward.

    Ingress (``received_at``, signature ages), the worker (claims, retry delays, leases) and
    the scheduler (cron fires) all read it, so a test jumps over a five-minute backoff or a
    nightly schedule without sleeping. Handlers that call ``datetime.now()`` themselves still
    see the real time; ``ctx.scheduled_at`` and ``ctx.event.received_at`` follow this clock.
    Calling the clock returns the time, so it can be passed as ``clock=`` anywhere.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(UTC)
        self._now = _aware(start, "start")
        self._lock = threading.Lock()  # plain handlers run in threads and may read it

    def __call__(self) -> datetime:
        return self.now()

    def __repr__(self) -> str:
        return f"<Clock {self.now().isoformat()}>"

    def now(self) -> datetime:
        """The current test time, an aware UTC datetime."""
        with self._lock:
            return self._now

    def time(self) -> float:
        """The current test time as Unix seconds (what signature schemes use)."""
        return self.now().timestamp()

    def advance(self, delta: timedelta | float = 0.0, /, **parts: float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds) and/or ``minutes=5``-style parts.

        Returns the new time. Time never goes backwards: a negative step is refused.
        """
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if parts:
            try:
                step += timedelta(**parts)
            except TypeError as exc:
                raise TypeError(f"Clock.advance: {exc}") from None
        if step < timedelta(0):
            raise ValueError(f"Clock.advance: time does not go backwards ({step})")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> datetime:
        """Move forward to ``when`` (aware). Moving backwards is refused."""
        when = _aware(when, "when")
        with self._lock:
            if when < self._now:
                raise ValueError(
                    f"Clock.set: {when.isoformat()} is before {self._now.isoformat()};"
                    " time does not go backwards"
                )
            self._now = when
            return self._now


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"Clock: {what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"Clock: {what} must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return value.astimezone(UTC)
