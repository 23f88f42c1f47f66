"""``store._pool``: multi-host URLs, the connection budget, pooler mode, the refusal message."""

from __future__ import annotations

import asyncpg
import sqlalchemy as sa

from solo_os import config, errors
from solo_os.store import _db, _pool

MULTI = "postgresql://u:secret@h1:5432,h2:5433/app?target_session_attrs=read-write"


def test_a_multi_host_url_is_given_to_sqlalchemy_in_its_own_form() -> None:
    url = sa.make_url(_pool.sqlalchemy_url(MULTI))  # the libpq form raised ValueError here
    assert url.drivername == "postgresql+asyncpg" and url.database == "app"
    assert url.query["host"] == ("h1:5432", "h2:5433")
    assert url.query["target_session_attrs"] == "read-write"
    assert _pool.dsn(MULTI) == MULTI  # asyncpg takes the libpq form itself
    assert _pool.hosts(MULTI) == ["h1:5432", "h2:5433"]
    assert config.load(DATABASE_URL=MULTI).dialect == "postgresql"


def test_the_budget_and_pooler_mode_come_from_the_settings() -> None:
    s = config.load(
        DATABASE_URL=MULTI, SOLO_OS_DB_POOL_SIZE=3, SOLO_OS_DB_ADMIN_POOL_SIZE=2,
        SOLO_OS_DB_POOLER="transaction",
    )
    opts = _pool.options(s)
    assert opts.budget == 5  # no listener behind a transaction pooler without SOLO_OS_LISTEN_URL
    args = _pool.engine_args(opts)
    assert args["pool_size"] == 2 and args["max_overflow"] == 0
    assert args["connect_args"]["statement_cache_size"] == 0
    assert args["connect_args"]["prepared_statement_cache_size"] == 0
    assert _pool.asyncpg_args(opts)["statement_cache_size"] == 0
    listened = _pool.options(config.load(SOLO_OS_DB_POOLER="transaction", SOLO_OS_LISTEN_URL=MULTI))
    assert listened.listens and listened.budget == 15
    assert _pool.Options().budget == 15 and "statement_cache_size" not in _pool.asyncpg_args(_pool.Options())


def test_too_many_clients_is_a_clear_unavailable_error() -> None:
    class TooManyConnectionsError(Exception):
        sqlstate = "53300"

    err = _db._translate(TooManyConnectionsError("sorry, too many clients already"))
    assert isinstance(err, errors.StoreUnavailable)
    assert "too many clients" in str(err) and "SOLO_OS_DB_POOL_SIZE" in str(err)


def test_location_names_hosts_and_database_never_credentials() -> None:
    url = "postgresql://solo:s3cret@db1:5433,db2/shop?target_session_attrs=read-write"
    assert _pool.location(url) == "PostgreSQL at db1:5433,db2:5432/shop"


def test_reason_reads_the_driver_error_under_the_store_error() -> None:
    def wrapped(cause: BaseException) -> errors.StoreUnavailable:
        try:
            raise errors.StoreUnavailable("store unavailable: x") from cause
        except errors.StoreUnavailable as exc:
            return exc

    full = asyncpg.TooManyConnectionsError("sorry, too many clients already")
    assert _pool.reason(wrapped(full)).startswith("too many clients already")
    assert _pool.reason(wrapped(ConnectionRefusedError(111, "refused"))).startswith("connection refused")
    assert _pool.reason(wrapped(TimeoutError())) == "no answer in time"
    starting = asyncpg.CannotConnectNowError("the database system is starting up")
    assert _pool.reason(wrapped(starting)).startswith("the server is starting up")


class _FullServerPool:
    """An asyncpg pool whose server refuses new connections: ``size`` live ones, ``busy`` of
    them in use for the first ``busy_polls`` looks."""

    def __init__(self, size: int, busy_polls: int) -> None:
        self.size, self.busy_polls, self.tries = size, busy_polls, 0

    async def acquire(self) -> str:
        self.tries += 1
        if self.busy_polls > 0:
            raise asyncpg.TooManyConnectionsError("sorry, too many clients already")
        return "a live connection"

    def get_size(self) -> int:
        return self.size

    def get_idle_size(self) -> int:
        self.busy_polls -= 1
        return 0 if self.busy_polls > 0 else 1


async def test_a_full_server_waits_for_a_connection_the_pool_holds() -> None:
    pool = _FullServerPool(size=3, busy_polls=5)
    assert await _pool.acquire(pool) == "a live connection"
    assert pool.tries == 2


async def test_a_full_server_and_an_empty_pool_is_refused_at_once() -> None:
    pool = _FullServerPool(size=0, busy_polls=5)
    try:
        await _pool.acquire(pool, patience=5)
    except asyncpg.TooManyConnectionsError:
        assert pool.tries == 1
    else:
        raise AssertionError("acquired from an empty pool on a full server")
