"""``store._clock``: the offset to the database's clock, from one round trip."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from solo_os import store
from solo_os.store import _clock

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    _clock.reset()
    yield
    _clock.reset()


def test_a_host_30s_ahead_reads_the_databases_time() -> None:
    # sent at 30.0 s ahead, the database answered at T + 0.05 s (half the 0.1 s round trip)
    _clock.observe(T + timedelta(seconds=30), T + timedelta(seconds=0.05), T + timedelta(seconds=30.1))
    assert _clock.offset() == timedelta(seconds=-30)
    assert abs(store.utcnow() - datetime.now(UTC) - timedelta(seconds=-30)) < timedelta(seconds=1)


def test_small_offsets_and_slow_measurements_are_ignored() -> None:
    _clock.observe(T, T + timedelta(milliseconds=60), T + timedelta(milliseconds=20))
    assert _clock.offset() == timedelta(0)  # 50 ms: within the tolerance
    _clock.observe(T, T + timedelta(seconds=30), T + timedelta(seconds=2))
    assert _clock.offset() == timedelta(0)  # a 2 s round trip says too little
    _clock.observe(T, T - timedelta(seconds=30), T + timedelta(milliseconds=2))
    assert _clock.offset() == timedelta(seconds=-30, milliseconds=-1)
