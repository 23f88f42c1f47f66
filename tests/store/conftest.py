"""Fixtures of the store contract suite: a second connection to the same database, a clock.

Every test here runs on SQLite and on PostgreSQL (the ``store`` and ``database_url`` fixtures
of tests/conftest.py). Time is an input: tests pass ``clock()`` as ``now`` to the store rather
than sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from solo_os import store as store_mod
from solo_os.testing import Clock


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[store_mod.Store]:
    """A second store on the same database: another process, as far as the database knows."""
    s = store_mod.connect(database_url)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
