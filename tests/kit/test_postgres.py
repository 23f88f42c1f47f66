"""The plugin on PostgreSQL: a database per test cloned from a template, dropped afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from solo_os.testing import Solo, _databases
from tests import conftest as root
from tests.kit import apps

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def solo_databases(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_databases.Databases]:
    databases = _databases.Databases(tmp_path_factory.mktemp("pg"), root.PG_ADMIN_URL)
    yield databases
    databases.close()


async def _names(prefix: str) -> set[str]:
    conn = await asyncpg.connect(root.PG_ADMIN_URL)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%")
    finally:
        await conn.close()
    return {r[0] for r in rows}


async def test_the_solo_fixture_runs_on_postgresql(solo: Solo, effects: apps.Effects) -> None:
    assert solo.store.dialect == "postgresql"
    assert solo.database_url.rsplit("/", 1)[1].startswith("solo_os_test_")
    effects.failures["fulfil"] = 2
    posted = await solo.client.billing("invoice.paid", {"id": "inv_pg", "amount_cents": 100})
    assert posted.status == "accepted"
    assert (await solo.client.post(posted.delivery)).status == "duplicate"
    await solo.drain(skip_retries=True)
    [x] = await solo.assert_succeeded("fulfil", times=1)
    assert x.attempts == 3


async def test_each_database_is_dropped_and_the_template_at_the_end(pg_template: str, tmp_path: Path) -> None:
    databases = _databases.Databases(tmp_path, root.PG_ADMIN_URL)
    url = await databases.create(tmp_path)
    name = url.rsplit("/", 1)[1]
    template = databases._template
    assert template is not None
    assert {name, template} <= await _names("solo_os_")
    await databases.drop(url)
    assert name not in await _names("solo_os_test_")
    await asyncio.to_thread(databases.close)
    assert template not in await _names("solo_os_test_tpl_")
