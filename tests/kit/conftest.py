"""The kit's own tests use the plugin's fixtures.

A ``pytest_plugins = ["solo_os.testing"]`` line is only allowed in the rootdir's conftest,
so the fixtures are imported here; with the ``pytest11`` entry point installed they are
registered for every test anyway (these imports then shadow them with the same functions).
"""

from __future__ import annotations

import pytest

from solo_os import App
from solo_os.testing.plugin import (  # noqa: F401 - fixtures, found by name
    solo,
    solo_clock,
    solo_database_url,
    solo_databases,
    solo_env,
    solo_settings,
)
from tests.kit import apps


@pytest.fixture
def effects() -> apps.Effects:
    return apps.Effects()


@pytest.fixture
def solo_app(effects: apps.Effects) -> App:
    return apps.make_app(effects)
