"""The ``solo`` fixture comes from solo-os's pytest plugin; pyproject.toml names the app
(``solo_os_app = "app.py"``). Each test gets app.py on a fresh SQLite database, deliveries
signed as the providers sign them (with generated test secrets), and a clock that only moves
when the test moves it. See https://github.com/solo-os/solo-os/blob/main/docs/testing.md."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from solo_os.testing import Clock


@pytest.fixture
def solo_clock() -> Clock:
    return Clock(datetime(2026, 5, 4, 12, 0, tzinfo=UTC))  # a fixed start: a Monday, noon UTC
