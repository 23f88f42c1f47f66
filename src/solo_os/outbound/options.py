"""``HttpOptions``: how ``ctx.http`` calls are made, as ``app.http(...)`` declares them."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HttpOptions:
    """How ``ctx.http`` calls are made; ``app.http(...)`` sets them per app.

    ``timeout`` bounds each phase of one try (connect, write, pool wait, read between bytes);
    ``connect_timeout`` overrides it for connecting. ``max_wait`` bounds how long a call waits
    for a rate-limit token or a paused key before the execution is rescheduled instead.
    ``retries`` is the number of tries per call (1 = no retry); retried tries wait
    ``backoff * 2 ** (n - 1)`` seconds at most (full jitter), capped by ``max_backoff``.
    """

    timeout: float = 10.0
    connect_timeout: float | None = None
    max_wait: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_connections: int = 100

    def __post_init__(self) -> None:
        for name in ("timeout", "backoff", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"http {name}= must be a number of seconds >= 0")
        if not self.timeout > 0:
            raise ValueError("http timeout= must be > 0 seconds")
        if self.connect_timeout is not None and not (
            isinstance(self.connect_timeout, int | float)
            and math.isfinite(self.connect_timeout)
            and self.connect_timeout > 0
        ):
            raise ValueError("http connect_timeout= must be > 0 seconds")
        if not (isinstance(self.max_wait, int | float) and 0 <= self.max_wait <= 3600):
            raise ValueError("http max_wait= must be between 0 and 3600 seconds")
        if not (isinstance(self.retries, int) and 1 <= self.retries <= 10):
            raise ValueError("http retries= is the number of tries per call: 1 to 10")
        if not (isinstance(self.max_connections, int) and self.max_connections >= 1):
            raise ValueError("http max_connections= must be >= 1")
