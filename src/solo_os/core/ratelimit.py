"""Outbound call limits: what ``app.rate_limit`` declares, and the pure token-bucket math.

No I/O here. The token bucket is a state (``Bucket``) and a function (``take``) from a state,
a clock reading and a demand to the next state and what was granted; the store keeps the state
in one row per key and calls ``take`` inside a transaction that locks that row, so every worker
process on every host spends tokens from the same bucket.

A bucket of capacity ``burst`` refilled at ``rate`` tokens per second lets at most
``burst + rate * T`` calls start in any window of ``T`` seconds.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

Per = Literal["second", "minute", "hour", "day"]
PER_SECONDS: dict[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
MAX_PAUSE = 86_400.0  # a Retry-After beyond a day is treated as a day (a broken or hostile header)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces: hosts and account names
_EPSILON = 1e-9  # float slack so 0.9999999999 tokens count as one


@dataclass(frozen=True)
class Limit:
    """At most ``rate`` calls per ``per`` for ``key``, with bursts of up to ``burst`` calls."""

    key: str
    rate: float
    per: Per = "second"
    burst: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise ValueError(
                f"rate limit key {self.key!r}: use a host (api.stripe.com) or a name without spaces"
                ", 1 to 255 characters"
            )
        if self.per not in PER_SECONDS:
            raise ValueError(f"rate limit {self.key!r}: per= must be one of {', '.join(PER_SECONDS)}")
        if not (isinstance(self.rate, int | float) and math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate limit {self.key!r}: rate= must be a positive number")
        if self.burst is not None and not (
            isinstance(self.burst, int | float) and math.isfinite(self.burst) and self.burst >= 1
        ):
            raise ValueError(f"rate limit {self.key!r}: burst= must be a number >= 1")

    @property
    def per_second(self) -> float:
        """Tokens added to the bucket per second."""
        return float(self.rate) / PER_SECONDS[self.per]

    @property
    def capacity(self) -> float:
        """The bucket's size: ``burst``, or by default one second's worth of calls (at least 1)."""
        if self.burst is not None:
            return float(self.burst)
        return float(max(1, math.ceil(self.per_second - _EPSILON)))


@dataclass(frozen=True)
class Bucket:
    """The shared state of one key: tokens left as of ``updated_at``, and a pause."""

    tokens: float
    updated_at: datetime
    paused_until: datetime | None = None


@dataclass(frozen=True)
class Grant:
    """The answer to a demand: ``granted`` tokens (0..want); when short, ``wait`` is the
    number of seconds until the next token can be free (the end of a pause, or a refill)."""

    granted: int
    wait: float = 0.0


def fresh(capacity: float, now: datetime) -> Bucket:
    """A key never used before: a full bucket."""
    return Bucket(tokens=capacity, updated_at=now)


def take(bucket: Bucket, now: datetime, rate: float, capacity: float, want: int) -> tuple[Bucket, Grant]:
    """Refill ``bucket`` up to ``now`` and take up to ``want`` whole tokens from it.

    A clock that reads earlier than ``updated_at`` (another host's clock, or the end of a
    pause that lies ahead) adds nothing: time never runs backwards for a bucket, so skewed
    clocks can only make it stricter. While paused nothing is granted.
    """
    if want < 0:
        raise ValueError("want must be >= 0")
    elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
    tokens = min(capacity, bucket.tokens + elapsed * rate)
    updated_at = max(bucket.updated_at, now)
    until = bucket.paused_until
    if until is not None and now < until:
        return Bucket(tokens, updated_at, until), Grant(0, (until - now).total_seconds())
    granted = min(want, max(0, math.floor(tokens + _EPSILON)))
    tokens = max(0.0, tokens - granted)
    state = Bucket(tokens, updated_at, None)
    if granted >= want:
        return state, Grant(granted)
    return state, Grant(granted, max(0.0, (1.0 - tokens) / rate))


def pause(bucket: Bucket, now: datetime, seconds: float) -> Bucket:
    """Stop granting until ``now + seconds``; the bucket restarts empty after the pause.

    Restarting empty means the calls resume at the declared rate, not with a burst, after a
    provider said "too many". A pause never shortens one already in place.
    """
    seconds = min(MAX_PAUSE, max(0.0, seconds))
    until = now + timedelta(seconds=seconds)
    if bucket.paused_until is not None and bucket.paused_until >= until:
        return bucket
    return replace(bucket, tokens=0.0, updated_at=max(bucket.updated_at, until), paused_until=until)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None when absent or unreadable.

    Accepts delay-seconds (``"120"``, leniently ``"1.5"``) and an HTTP date in any of the
    three forms RFC 9110 names; a date in the past means 0. Capped at ``MAX_PAUSE``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d{1,12}(\.\d{1,6})?", value):
        return min(MAX_PAUSE, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime form: HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(MAX_PAUSE, max(0.0, (when - now).total_seconds()))


def backoff(tried: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The delay before try ``tried + 1``: full jitter over ``min(cap, base * 2 ** (tried - 1))``."""
    ceiling = min(cap, base * 2.0 ** min(max(tried, 1) - 1, 32))
    return (rng or random).uniform(0.0, ceiling)
