"""Private PostgreSQL clusters for one test (``_cluster.Cluster``), made and removed by it.

Under ``CI=true`` a cluster that cannot be made fails the test; elsewhere it skips, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping

import asyncpg
import pytest

from tests.chaos import _cluster, _support

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def cluster(max_connections: int = 100) -> Iterator[_cluster.Cluster]:
    bindir, why = _cluster.find_bindir()
    prefix, why_user = _cluster.runas_prefix()
    if bindir is None or prefix is None:
        need(f"a private PostgreSQL cluster cannot be made here: {why or why_user}")
    assert bindir is not None and prefix is not None
    c = _cluster.Cluster(bindir, prefix)
    c.max_connections = max_connections
    try:
        c.init()
        c.start()
        yield c
    finally:
        try:
            c.stop()
        finally:
            c.remove()


async def database(c: _cluster.Cluster, name: str, env: Mapping[str, str] | None = None) -> str:
    """Create database ``name`` on ``c`` and run ``solo-os db upgrade`` on it; its URL."""
    admin = await asyncpg.connect(c.url(), timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = c.url(name)
    upgrade = await asyncio.to_thread(
        subprocess.run, [_support.SOLO_OS, "db", "upgrade"], env=_support.env_for(url, **(env or {})),
        capture_output=True, text=True, timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    return url
