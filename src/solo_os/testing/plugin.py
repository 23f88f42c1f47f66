"""The pytest plugin: the ``solo`` fixture and the options that configure it.

Fixtures (override any of them in a ``conftest.py``):

- ``solo_app``: the ``App`` under test. By default the ``solo_os_app`` ini option or the
  ``SOLO_OS_APP`` variable (``path/to/app.py`` or ``module:attribute``); most projects
  override it to return their app object.
- ``solo_env``: secrets and other variables the app's sources read (default: none; every
  secret not given is generated).
- ``solo_settings``: setting overrides, e.g. ``{"MAX_RETRY_ATTEMPTS": 5}``.
- ``solo_clock``: the test time (default: a ``Clock`` frozen at the real time now; return
  ``Clock(datetime(2026, 3, 29, tzinfo=UTC))`` for a fixed start).
- ``solo_database_url``: a fresh migrated database per test: SQLite by default, PostgreSQL
  with ``--solo-db-url postgresql://...`` or ``SOLO_OS_TEST_DATABASE_URL``.
- ``solo``: the running app (``solo_os.testing.Solo``).

The async fixtures need an asyncio test runner: pytest-asyncio (``asyncio_mode = "auto"``
or ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from solo_os import _loader, errors
from solo_os import app as app_mod
from solo_os.testing import _clock, _databases, _harness

DB_ENV = "SOLO_OS_TEST_DATABASE_URL"

F = TypeVar("F", bound=Callable[..., Any])

try:  # pytest-asyncio's decorator works in both its strict and auto modes
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio (anyio's plugin, for one)
    _fixture = pytest.fixture


def _async_fixture(fn: F) -> F:
    return cast(F, _fixture(fn))


_apps: dict[str, app_mod.App] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("solo-os", "solo-os test runtime")
    group.addoption(
        "--solo-db-url",
        dest="solo_db_url",
        default=None,
        help=f"PostgreSQL server URL for the solo fixture's databases (env {DB_ENV}); default SQLite",
    )
    parser.addini("solo_os_app", "the App the solo fixture runs: path/to/app.py or module:attribute")


def _option(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # the plugin was registered after the command line was parsed
        return None


def _ini(config: pytest.Config, name: str) -> str | None:
    try:
        value = config.getini(name)
    except ValueError:
        return None
    return str(value) if value else None


@pytest.fixture(scope="session")
def solo_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_databases.Databases]:
    """Makes the per-test databases (from a template migrated once per session)."""
    url = _option(request.config, "solo_db_url") or os.environ.get(DB_ENV) or None
    databases = _databases.Databases(tmp_path_factory.mktemp("solo-os-template"), url)
    yield databases
    databases.close()


@_async_fixture
async def solo_database_url(solo_databases: _databases.Databases, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (dropped afterwards on PostgreSQL)."""
    url = await solo_databases.create(tmp_path)
    try:
        yield url
    finally:
        await solo_databases.drop(url)


@pytest.fixture
def solo_app(request: pytest.FixtureRequest) -> app_mod.App:
    """The App under test; override this fixture, or set ``solo_os_app`` / ``SOLO_OS_APP``."""
    target = _ini(request.config, "solo_os_app") or os.environ.get("SOLO_OS_APP")
    if not target:
        raise pytest.UsageError(
            "solo-os: which app? Override the solo_app fixture in conftest.py"
            " (return your App), or set solo_os_app = 'path/to/app.py' in the pytest"
            " configuration, or SOLO_OS_APP"
        )
    module, sep, attr = target.partition(":")
    if module.endswith(".py") or "/" in module:
        candidate = Path(module)
        if not candidate.is_absolute():
            candidate = request.config.rootpath / candidate
        target = str(candidate) + sep + attr
    if target not in _apps:  # loaded once per session: module state is the test's to reset
        try:
            _apps[target] = _loader.load_app(target)
        except errors.ConfigError as exc:
            raise pytest.UsageError(f"solo-os: {'; '.join(exc.problems)}") from None
    return _apps[target]


@pytest.fixture
def solo_env() -> dict[str, str]:
    """Variables the app's sources read (secrets); generated where not given."""
    return {}


@pytest.fixture
def solo_settings() -> dict[str, Any]:
    """Setting overrides for the test runtime (SPEC names or field names)."""
    return {}


@pytest.fixture
def solo_clock() -> _clock.Clock:
    """The test time: frozen at the real time now until the test moves it."""
    return _clock.Clock()


@_async_fixture
async def solo(
    solo_app: app_mod.App,
    solo_database_url: str,
    solo_env: dict[str, str],
    solo_settings: dict[str, Any],
    solo_clock: _clock.Clock,
) -> AsyncIterator[_harness.Solo]:
    """The app running in this process on a throwaway database, with a test clock."""
    async with _harness.run(
        solo_app,
        database_url=solo_database_url,
        env=solo_env,
        settings=solo_settings,
        clock=solo_clock,
    ) as harness:
        yield harness


__all__ = [
    "pytest_addoption",
    "solo",
    "solo_app",
    "solo_clock",
    "solo_database_url",
    "solo_databases",
    "solo_env",
    "solo_settings",
]
