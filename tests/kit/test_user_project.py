"""A user's project: solo-os installed into a fresh virtualenv, its tests run with the plugin.

The virtualenv gets solo-os from this checkout (built as a wheel) plus pytest and
pytest-asyncio, resolved by uv from the package index (cached after the first run). The
project configures its app in its pytest settings only: the plugin does the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import conftest as root
from tests.kit import _support

PYPROJECT = """
[project]
name = "shop"
version = "0"

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
solo_os_app = "shop.py"
filterwarnings = ["error"]
"""
SHOP = """
from pydantic import BaseModel
from solo_os import App, Context, NonRetryable, Retry, sources

app = App(service="shop")
app.source("stripe", sources.stripe(payload="data.object"))


class Charge(BaseModel):
    id: str
    amount: int
    fail: bool = False


@app.on("stripe", "charge.succeeded", schema=Charge, retry=Retry(max_attempts=3))
async def book(charge: Charge, ctx: Context) -> None:
    if charge.fail:
        raise RuntimeError(f"cannot book {charge.id}")
    await ctx.step("book", lambda: {"booked": charge.id})
    ctx.log.info("booked", charge_id=charge.id, amount=charge.amount)


@app.on("stripe", "charge.refunded")
async def refund(charge: dict, ctx: Context) -> None:
    raise NonRetryable("refunds are manual")
"""
TESTS = """
from datetime import timedelta


async def test_the_plugin_came_by_itself_or_by_p(request):
    assert request.config.pluginmanager.has_plugin("solo_os.testing")


async def test_a_charge_is_booked_once(solo):
    first = await solo.client.stripe("charge.succeeded", {"id": "ch_1", "amount": 500})
    assert first.status == "accepted"
    assert (await solo.client.post(first.delivery)).status == "duplicate"
    await solo.drain()
    [run] = await solo.assert_succeeded("book", times=1)
    assert await solo.steps(run) == {"book": {"booked": "ch_1"}}
    solo.assert_logged("booked", charge_id="ch_1", amount=500)


async def test_failures_retry_on_the_test_clock_into_the_dead_letter_queue(solo):
    await solo.client.stripe("charge.succeeded", {"id": "ch_2", "amount": 1, "fail": True})
    await solo.drain()
    [pending] = await solo.executions("book", status="pending")
    assert pending.attempts == 1
    solo.clock.advance(timedelta(hours=1))
    await solo.drain(skip_retries=True)
    [dead] = await solo.assert_dead("book", error="cannot book ch_2")
    assert dead.attempts == 3
    assert len(solo.logs("execution.dead")) == 1


async def test_non_retryable(solo):
    await solo.client.stripe("charge.refunded", {"id": "ch_3"})
    await solo.drain()
    await solo.assert_dead("refund", times=1)
    assert solo.database_url.startswith(("sqlite", "postgresql"))
"""


def _uv() -> str:
    found = shutil.which("uv") or str(_support.ROOT / ".tools" / "bin" / "uv")
    if not Path(found).is_file():
        if root.IN_CI:
            pytest.fail("uv is needed to build the user project's virtualenv")
        pytest.skip("uv not found: cannot build a fresh virtualenv")
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("user-project")
    uv = _uv()
    venv = base / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env, timeout=300
    )
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, str(_support.ROOT), "pytest", "pytest-asyncio"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    shop = base / "shop"
    (shop / "tests").mkdir(parents=True)
    (shop / "pyproject.toml").write_text(PYPROJECT)
    (shop / "shop.py").write_text(SHOP)
    (shop / "tests" / "test_shop.py").write_text(TESTS)
    return shop, python


def _declares_entry_point() -> bool:
    data = tomllib.loads((_support.ROOT / "pyproject.toml").read_text())
    points = data.get("project", {}).get("entry-points", {}).get("pytest11", {})
    return points.get("solo_os.testing") == "solo_os.testing"


def test_the_installed_package_is_this_checkout_outside_the_repo(project: tuple[Path, str]) -> None:
    shop, python = project
    where = subprocess.run(
        [python, "-c", "import solo_os, solo_os.testing; print(solo_os.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=shop,
    ).stdout
    assert "site-packages" in where and str(_support.ROOT / "src") not in where
    # With the entry point declared the plugin loads by itself; until then, -p loads it.
    assert (_support.plugin_args(python) == []) == _declares_entry_point()


def test_the_users_tests_pass_with_the_plugin(project: tuple[Path, str]) -> None:
    shop, python = project
    env = _support.clean_env(PYTHONPATH="")
    r = _support.pytest_in(shop / "tests", "-q", python=python, env=env, cwd=shop)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert re.search(r"\b4 passed\b", r.stdout), r.stdout


@pytest.mark.postgres
def test_the_users_tests_pass_on_postgresql(project: tuple[Path, str], pg_template: str) -> None:
    shop, python = project
    env = _support.clean_env(PYTHONPATH="")
    r = _support.pytest_in(
        shop / "tests", "-q", "--solo-db-url", root.PG_ADMIN_URL, python=python, env=env, cwd=shop
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert re.search(r"\b4 passed\b", r.stdout), r.stdout
