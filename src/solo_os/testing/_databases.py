"""Throwaway databases for tests: each a copy of a template migrated once per session.

SQLite: the template is a file, copied per test. PostgreSQL: given a server URL (any database
on it that the user may connect to, with the CREATEDB privilege), the template is a database
``solo_os_test_tpl_<hex>`` and each test gets ``CREATE DATABASE solo_os_test_<hex> TEMPLATE ...``,
dropped afterwards. Both are much faster than migrating per test.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from solo_os import config, errors
from solo_os import store as store_mod


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme.split("+", 1)[0].lower() in ("postgresql", "postgres")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (query string, user and host kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


async def _migrate(url: str) -> None:
    store = store_mod.connect(url)
    try:
        await store.migrate()
    finally:
        await store.close()


class Databases:
    """Hands out fresh, migrated databases; ``close()`` removes the templates."""

    def __init__(self, workdir: Path, server_url: str | None = None) -> None:
        if server_url is not None:
            try:
                config.driver_url(server_url)
            except ValueError as exc:
                raise errors.ConfigError(f"solo-os test database URL: {exc}") from None
            if not is_postgres(server_url):
                raise errors.ConfigError(
                    "solo-os test database URL: give a postgresql:// server URL"
                    " (SQLite needs none: each test gets its own file)"
                )
        self.workdir = workdir
        self.server_url = server_url
        self._template: str | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def dialect(self) -> str:
        return "postgresql" if self.server_url else "sqlite"

    def _template_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:  # each test may run its own loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def create(self, where: Path) -> str:
        """A fresh migrated database; SQLite files go in ``where``."""
        async with self._template_lock():
            if self._template is None:
                self._template = await self._make_template()
        if self.server_url is None:
            path = where / f"solo_os_{uuid.uuid4().hex[:8]}.db"
            await asyncio.to_thread(shutil.copyfile, self._template, path)
            return f"sqlite:///{path}"
        name = f"solo_os_test_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return with_database(self.server_url, name)

    async def drop(self, url: str) -> None:
        """Remove a database made by ``create`` (SQLite files stay in the test's tmp dir)."""
        if self.server_url is not None and is_postgres(url):
            name = urlsplit(url).path.lstrip("/")
            if name.startswith("solo_os_test_"):
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the PostgreSQL template (run at the end of the session, from sync code)."""
        template, self._template = self._template, None
        if template is None or self.server_url is None:
            return
        _run_in_thread(lambda: self._admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))

    async def _make_template(self) -> str:
        if self.server_url is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            path = self.workdir / "solo_os_template.db"
            await _migrate(f"sqlite:///{path}")
            return str(path)
        name = f"solo_os_test_tpl_{uuid.uuid4().hex[:10]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        try:
            await _migrate(with_database(self.server_url, name))
        except BaseException:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            raise
        return name

    async def _admin(self, sql: str) -> None:
        import asyncpg  # a dependency of solo-os; imported here so SQLite-only runs skip it

        assert self.server_url is not None
        try:
            conn = await asyncpg.connect(_asyncpg_dsn(self.server_url), timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise errors.StoreUnavailable(
                f"solo-os test database server unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            await conn.execute(sql)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise errors.StoreError(
                "solo-os test databases: the user of the test database URL needs the CREATEDB"
                f" privilege ({exc})"
            ) from exc
        finally:
            await conn.close()


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion on a private loop, whatever loop this thread runs."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="solo-os-testing-cleanup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
