"""Retry policy and the pure decision of what happens after a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from solo_os import errors


@dataclass(frozen=True)
class Retry:
    """How a handler is retried.

    ``None`` fields take the app's defaults (``MAX_RETRY_ATTEMPTS``, ``RETRY_BASE_DELAY_MS``).
    Delays are in seconds. With ``jitter`` the delay is drawn uniformly from
    ``[0, min(max_delay, base_delay * 2 ** (attempt - 1))]`` ("full jitter"), which spreads
    a burst of failures out instead of retrying them all at the same moment.
    """

    max_attempts: int | None = None
    base_delay: float | None = None
    max_delay: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be >= 1")
        if self.base_delay is not None and self.base_delay < 0:
            raise ValueError("Retry.base_delay must be >= 0")
        if self.max_delay < 0:
            raise ValueError("Retry.max_delay must be >= 0")

    def resolved(self, max_attempts: int, base_delay: float) -> Retry:
        """This policy with the app's defaults filled in."""
        return Retry(
            max_attempts=self.max_attempts if self.max_attempts is not None else max_attempts,
            base_delay=self.base_delay if self.base_delay is not None else base_delay,
            max_delay=self.max_delay,
            jitter=self.jitter,
        )


@dataclass(frozen=True)
class Decision:
    """What to do with an execution after a failed attempt."""

    action: Literal["retry", "dead"]
    delay: float = 0.0
    reason: str = ""


def backoff_ceiling(attempt: int, policy: Retry) -> float:
    """The largest delay the policy allows after ``attempt`` (1-based)."""
    base = policy.base_delay or 0.0
    # 2 ** 64 is past any max_delay; capping the exponent avoids float overflow.
    return min(policy.max_delay, base * 2.0 ** min(attempt - 1, 64))


def decide(
    error: BaseException, attempt: int, policy: Retry, rng: random.Random | None = None
) -> Decision:
    """Retry or dead-letter after ``attempt`` (1-based) failed with ``error``.

    ``policy`` must be resolved (no ``None`` fields).
    """
    max_attempts = policy.max_attempts or 1
    if isinstance(error, errors.NonRetryable):
        return Decision("dead", reason="non_retryable")
    if attempt >= max_attempts:
        return Decision("dead", reason="attempts_exhausted")
    if isinstance(error, errors.RetryAfter):
        return Decision("retry", delay=error.seconds, reason="retry_after")
    ceiling = backoff_ceiling(attempt, policy)
    delay = (rng or random).uniform(0.0, ceiling) if policy.jitter else ceiling
    return Decision("retry", delay=delay, reason="backoff")
