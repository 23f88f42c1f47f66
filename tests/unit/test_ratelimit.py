"""The token bucket, pauses, Retry-After parsing and call backoff: pure functions, by tables."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solo_os.core import ratelimit
from solo_os.core.ratelimit import Bucket, Grant, Limit
from solo_os.outbound import options as options_mod

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- declarations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "per_second", "capacity"),
    [
        (Limit("api.stripe.com", 25), 25.0, 25.0),
        (Limit("api.stripe.com", 25, burst=5), 25.0, 5.0),
        (Limit("h", 100, "minute"), 100 / 60, 2.0),  # one second's worth, rounded up
        (Limit("h", 60, "minute"), 1.0, 1.0),  # exactly 1/s: not rounded up to 2
        (Limit("h", 1, "hour"), 1 / 3600, 1.0),  # at least one token
        (Limit("h", 86400, "day"), 1.0, 1.0),
        (Limit("h", 2.5), 2.5, 3.0),
        (Limit("stripe:acct_1", 10, burst=1), 10.0, 1.0),
    ],
)
def test_limit_rate_and_default_burst(limit: Limit, per_second: float, capacity: float) -> None:
    assert limit.per_second == pytest.approx(per_second)
    assert limit.capacity == capacity


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "", "rate": 1}, "use a host"),
        ({"key": "has space", "rate": 1}, "use a host"),
        ({"key": "x" * 256, "rate": 1}, "use a host"),
        ({"key": "h", "rate": 0}, "rate= must be a positive"),
        ({"key": "h", "rate": -1}, "rate= must be a positive"),
        ({"key": "h", "rate": float("inf")}, "rate= must be a positive"),
        ({"key": "h", "rate": float("nan")}, "rate= must be a positive"),
        ({"key": "h", "rate": 1, "per": "week"}, "per= must be one of"),
        ({"key": "h", "rate": 1, "burst": 0.5}, "burst= must be a number >= 1"),
        ({"key": "h", "rate": 1, "burst": float("inf")}, "burst= must be a number >= 1"),
    ],
)
def test_bad_limits_are_refused_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limit(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout= must be > 0"),
        ({"timeout": -1}, "timeout= must be a number"),
        ({"connect_timeout": 0}, "connect_timeout= must be > 0"),
        ({"max_wait": -1}, "max_wait= must be between"),
        ({"max_wait": 7200}, "max_wait= must be between"),
        ({"retries": 0}, "retries= is the number of tries"),
        ({"retries": 11}, "retries= is the number of tries"),
        ({"backoff": float("nan")}, "backoff= must be a number"),
        ({"max_connections": 0}, "max_connections= must be >= 1"),
    ],
)
def test_bad_http_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options_mod.HttpOptions(**kwargs)  # type: ignore[arg-type]


# --- the bucket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "now", "want", "tokens_after", "grant"),
    [
        # a full bucket gives what is asked, up to its size
        (Bucket(5.0, at(0)), at(0), 3, 2.0, Grant(3)),
        (Bucket(5.0, at(0)), at(0), 5, 0.0, Grant(5)),
        (Bucket(5.0, at(0)), at(0), 8, 0.0, Grant(5, 0.1)),  # short: next token in 1/rate
        # refill: 0.25 s at 10/s is 2.5 tokens
        (Bucket(0.0, at(0)), at(0.25), 2, 0.5, Grant(2)),
        (Bucket(0.0, at(0)), at(0.25), 3, 0.5, Grant(2, 0.05)),
        # never above capacity however long it rested
        (Bucket(0.0, at(0)), at(3600), 9, 0.0, Grant(5, 0.1)),
        # a fraction of a token is no token; the wait is for the rest of it
        (Bucket(0.4, at(0)), at(0), 1, 0.4, Grant(0, 0.06)),
        # float slack: 0.99999999999 counts as one
        (Bucket(1.0 - 1e-12, at(0)), at(0), 1, 0.0, Grant(1)),
        # a clock behind updated_at (skew) adds nothing and does not move time back
        (Bucket(1.0, at(10)), at(9), 2, 0.0, Grant(1, 0.1)),
        # asking for nothing changes nothing but the refill
        (Bucket(2.0, at(0)), at(0.1), 0, 3.0, Grant(0)),
    ],
)
def test_take(bucket: Bucket, now: datetime, want: int, tokens_after: float, grant: Grant) -> None:
    state, got = ratelimit.take(bucket, now, rate=10.0, capacity=5.0, want=want)
    assert got.granted == grant.granted
    assert got.wait == pytest.approx(grant.wait)
    assert state.tokens == pytest.approx(tokens_after)
    assert state.updated_at == max(bucket.updated_at, now)


def test_take_refuses_a_negative_demand() -> None:
    with pytest.raises(ValueError, match="want"):
        ratelimit.take(Bucket(1.0, at(0)), at(0), 1.0, 1.0, -1)


def test_a_paused_bucket_grants_nothing_until_the_pause_ends_then_restarts_empty() -> None:
    b = ratelimit.pause(Bucket(5.0, at(0)), at(0), 2.0)
    assert b.paused_until == at(2) and b.tokens == 0.0
    state, got = ratelimit.take(b, at(1.5), 10.0, 5.0, 1)
    assert got == Grant(0, pytest.approx(0.5))  # type: ignore[arg-type]
    assert state.paused_until == at(2)
    # right after the pause: no burst saved up during it, only the refill since its end
    state, got = ratelimit.take(state, at(2.0), 10.0, 5.0, 3)
    assert got.granted == 0 and got.wait == pytest.approx(0.1)
    assert state.paused_until is None
    state, got = ratelimit.take(state, at(2.25), 10.0, 5.0, 3)
    assert got.granted == 2


@pytest.mark.parametrize(
    ("first", "second", "until"),
    [
        (2.0, 1.0, 2.0),  # a shorter pause does not cut a longer one short
        (1.0, 2.0, 2.0),  # a longer one extends it
        (-5.0, 0.0, 0.0),  # negative means now
        (10 * 86400.0, 0.0, 86400.0),  # capped at a day
    ],
)
def test_pause_only_extends(first: float, second: float, until: float) -> None:
    b = ratelimit.pause(Bucket(1.0, at(0)), at(0), first)
    b = ratelimit.pause(b, at(0), second)
    assert b.paused_until == at(until)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    capacity=st.integers(1, 20),
    steps=st.lists(
        st.tuples(st.floats(0, 0.5), st.integers(0, 30), st.booleans()), min_size=1, max_size=80
    ),
)
def test_no_window_ever_gets_more_than_burst_plus_rate_times_its_length(
    rate: float, capacity: int, steps: list[tuple[float, int, bool]]
) -> None:
    """Whatever the demand and clock (even a clock jumping back), tokens granted over any
    window [a, b] never exceed capacity + rate * (b - a)."""
    bucket = ratelimit.fresh(float(capacity), at(0))
    clock = 0.0
    grants: list[tuple[float, int]] = []
    for dt, want, backwards in steps:
        clock = clock - dt if backwards else clock + dt
        bucket, got = ratelimit.take(bucket, at(clock), rate, float(capacity), want)
        assert 0 <= got.granted <= want
        assert got.wait >= 0
        # a grant is stamped at the bucket's time (which never runs backwards)
        grants.append(((bucket.updated_at - T0).total_seconds(), got.granted))
    for i, (start, _) in enumerate(grants):
        for end, _ in grants[i:]:
            total = sum(n for t, n in grants if start <= t <= end)
            assert total <= capacity + rate * (end - start) + 1e-6


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Tue, 24 Nov 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Tuesday, 24-Nov-26 12:01:00 GMT", 60.0),  # RFC 850
        ("Tue Nov 24 12:00:05 2026", 5.0),  # asctime (no zone: GMT)
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("999999999", ratelimit.MAX_PAUSE),  # capped
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        ("nan", None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    got = ratelimit.retry_after(value, T0)
    if seconds is None:
        assert got is None
    else:
        assert got == pytest.approx(seconds)


# --- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tried", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (100, 5.0)]
)
def test_backoff_is_full_jitter_below_a_doubling_capped_ceiling(tried: int, ceiling: float) -> None:
    rng = random.Random(7)
    delays = [ratelimit.backoff(tried, 0.5, 5.0, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9  # it does reach up to the ceiling
