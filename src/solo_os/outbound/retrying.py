"""When ``ctx.http`` tries a call again: one call across its tries, and what is safe to resend.

A request that never left this host (``NOT_SENT``) is always safe to send again; otherwise only
idempotent methods and calls that carry an ``Idempotency-Key`` are, and only with a body that
can be sent twice. 429 and 5xx answers (but 501) are retried with backoff, or after the
server's ``Retry-After`` when it fits in the call's waiting budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from solo_os.core import ratelimit

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request left this host: always safe to try again."""
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass
class Call:
    """One outbound call across its tries."""

    method: str
    request: httpx.Request
    limit: ratelimit.Limit | None
    tries: int
    deadline: float  # loop time: no wait (rate limit, backoff) past it
    keyed: bool  # carries an Idempotency-Key: safe to send again
    replayable: bool  # the body can be sent again
    follow_redirects: bool
    where: dict[str, str]
    own_traceparent: bool
    tried: int = 0

    def may_resend(self, exc: httpx.TransportError) -> bool:
        """Whether a try that got no answer may be tried again."""
        safe = isinstance(exc, NOT_SENT) or self.method in IDEMPOTENT_METHODS or self.keyed
        return self.tried < self.tries and self.replayable and safe

    def delay_after(
        self, status: int, pause: float | None, budget: float, backoff: Callable[[int], float]
    ) -> float | None:
        """Seconds to wait before trying again after an answer, or None to stop here."""
        if self.tried >= self.tries or not self.replayable:
            return None
        if pause is not None:
            return pause if pause <= budget else None
        retryable = status == 429 or (status >= 500 and status != 501)
        if not retryable:
            return None
        if status != 429 and not (self.method in IDEMPOTENT_METHODS or self.keyed):
            return None
        return backoff(self.tried)
