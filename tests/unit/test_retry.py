"""The retry decision is a pure function: tables of cases."""

from __future__ import annotations

import random

import pytest

from solo_os import errors
from solo_os.core import retry

POLICY = retry.Retry(max_attempts=5, base_delay=2.0, max_delay=30.0, jitter=False)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)],
)
def test_exponential_backoff_without_jitter(attempt: int, expected: float) -> None:
    d = retry.decide(RuntimeError("x"), attempt, POLICY)
    assert d.action == "retry" and d.delay == expected and d.reason == "backoff"


def test_backoff_is_capped_by_max_delay() -> None:
    policy = retry.Retry(max_attempts=100, base_delay=2.0, max_delay=30.0, jitter=False)
    assert retry.decide(RuntimeError(), 10, policy).delay == 30.0
    assert retry.backoff_ceiling(5000, policy) == 30.0  # no float overflow


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    policy = retry.Retry(max_attempts=10, base_delay=1.0, max_delay=60.0, jitter=True)
    rng = random.Random(7)
    delays = [retry.decide(RuntimeError(), 3, policy, rng).delay for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert max(delays) > 3.0 and min(delays) < 1.0  # spread over the whole range


class _Highest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_full_jitter_at_its_top_is_exactly_the_capped_ceiling() -> None:
    policy = retry.Retry(max_attempts=10, base_delay=1.0, max_delay=5.0, jitter=True)
    delays = [retry.decide(RuntimeError(), n, policy, _Highest()).delay for n in range(1, 6)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]  # 8 and 16 are capped at max_delay


@pytest.mark.parametrize(
    ("error", "attempt", "action", "reason"),
    [
        (RuntimeError("boom"), 4, "retry", "backoff"),
        (RuntimeError("boom"), 5, "dead", "attempts_exhausted"),
        (errors.NonRetryable("no"), 1, "dead", "non_retryable"),
        (errors.StepError("dup"), 1, "dead", "non_retryable"),
        (errors.RetryAfter(7), 1, "retry", "retry_after"),
        (errors.RetryAfter(7), 5, "dead", "attempts_exhausted"),
        (TimeoutError(), 2, "retry", "backoff"),
    ],
)
def test_decision_table(error: BaseException, attempt: int, action: str, reason: str) -> None:
    d = retry.decide(error, attempt, POLICY)
    assert (d.action, d.reason) == (action, reason)


def test_retry_after_sets_the_delay_exactly() -> None:
    assert retry.decide(errors.RetryAfter(7.5), 1, POLICY).delay == 7.5


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": -0.1}]
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be >= [01]"):
        retry.Retry(**kwargs)  # type: ignore[arg-type]


def test_retry_after_refuses_negative_seconds() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        errors.RetryAfter(-1)


def test_defaults_fill_only_what_is_unset() -> None:
    r = retry.Retry(max_attempts=7).resolved(max_attempts=3, base_delay=2.0)
    assert (r.max_attempts, r.base_delay) == (7, 2.0)
