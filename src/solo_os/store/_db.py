"""What every query module shares, written once: connections, driver-error translation, and
the dialect hooks.

Query modules hold a ``Database`` (composition, no shared base class) and go through it for a
reading or writing transaction, for the dialect's ``INSERT`` (with ``ON CONFLICT``), for JSON
text binding, and for waking workers. What differs between SQLite and PostgreSQL is the
``Dialect`` protocol below, implemented once in ``sqlite.py`` and once in ``postgres.py``;
shared code asks a hook and never tests the dialect's name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from solo_os import errors
from solo_os.core import records
from solo_os.store import _clock, _pool

T = TypeVar("T")
ReadConnection = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]


def utcnow() -> datetime:
    """Now, on the database's clock where it is known (``_clock``: hosts' clocks may differ)."""
    return _clock.now()


def chunks(items: Sequence[T], size: int = 500) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (bound parameters per statement stay bounded)."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class Lease(Protocol):
    """Executions an ingest transaction leased to this process's worker (``_sqlite_claim``)."""

    claimed: list[records.Claimed]
    claim_follows: bool  # the worker's own claim comes next: it sees what is left due

    def deliver(self) -> None:
        """After the commit: the worker starts them."""

    def cancel(self) -> None:
        """The transaction failed: nothing was leased."""


HandOff = Callable[[AsyncConnection, Sequence[records.NewEvent]], Awaitable[Lease | None]]


class Dialect(Protocol):
    """What differs between the databases; ``sqlite.SQLiteDialect``, ``postgres.PostgresDialect``."""

    name: str
    concurrent_writers: int  # writing transactions that can usefully run at once

    def insert(self, table: sa.Table) -> Any:
        """The dialect's ``INSERT`` (it offers ``on_conflict_do_nothing`` / ``_do_update``)."""

    def json_text(self, name: str) -> sa.ColumnElement[Any]:
        """A bound parameter of JSON text stored into a JSON column without re-encoding it."""

    async def notify(self, conn: AsyncConnection) -> None:
        """Tell other processes that work is due (inside the writing transaction)."""

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        """Serialize concurrent migrations (several processes starting at once)."""

    async def lock_waits(self, conn: AsyncConnection, keys: Sequence[int], shared: bool) -> None:
        """Order a wait's registration (exclusive) against ingest of its (source, type)
        (shared) until the transaction ends, so neither misses the other (``_workflow``)."""

    def wait_key(self, match: Mapping[str, Any] | None, paths: str) -> Any:
        """A wait's ``match_key`` at registration: a value, or the SQL that computes it."""

    async def notify_timer(self, conn: AsyncConnection, at: datetime) -> None:
        """Tell other processes' wake loops, at commit, that a wake time ``at`` was stored."""

    async def resume_waiters(
        self, conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
    ) -> bool | None:
        """Resume the waits newly accepted ``events`` match, the wait locks taken (True: some
        did); None when the caller matches them itself (``_workflow``, keys from Python)."""

    def exclusive(self, read: ReadConnection, key: int) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the database-wide lock ``key`` while inside; yields False if another holds it."""

    async def lock_keys(self, conn: AsyncConnection, keys: Sequence[str]) -> None:
        """Hold a lock per key until the transaction ends (taken in one order: no deadlock)."""

    def clock(self) -> sa.ColumnElement[datetime] | None:
        """The database's clock as a column (shared by every host), or None: this host's."""

    def epoch_seconds(self, col: Any) -> Any:
        """Seconds since the epoch of a ``UTCDateTime`` column, with the fraction."""

    def floor(self, value: Any) -> Any:
        """The integer floor of a non-negative number."""

    async def has_payload_index(self, read: ReadConnection) -> bool:
        """Whether the events' payload has a trigram index for substring search."""

    async def table_sizes(
        self, conn: AsyncConnection, names: Sequence[str]
    ) -> tuple[dict[str, int | None], int | None]:
        """Bytes of each table (with indexes) where known, and of the whole database."""


def _translate(exc: BaseException, unavailable: tuple[type[BaseException], ...] = ()) -> errors.StoreError:
    """A driver error as ``StoreUnavailable`` (try later) or ``StoreError``.

    ``unavailable`` are driver exception types that mean "try later" (a dialect's own).
    """
    if "TooManyConnections" in type(exc).__name__ or "53300" in str(getattr(exc, "sqlstate", "")):
        return errors.StoreUnavailable(_pool.REFUSED)
    if unavailable and isinstance(exc, unavailable):
        return errors.StoreUnavailable(f"store unavailable: {type(exc).__name__}")
    if isinstance(exc, sa.exc.DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        if (
            exc.connection_invalidated
            or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
            # connection exceptions, too many connections, server shutting down or starting up
            or state.startswith(("08", "57P", "53300"))
        ):
            return errors.StoreUnavailable(f"store unavailable: {type(exc.orig).__name__} {state}".strip())
        return errors.StoreError(f"store error: {type(exc.orig).__name__}: {exc.orig}")
    if isinstance(exc, OSError | TimeoutError | sa.exc.TimeoutError):
        return errors.StoreUnavailable(f"store unavailable: {type(exc).__name__}")
    name = type(exc).__name__
    if not unavailable and ("Connection" in name or "CannotConnect" in name or "Postgres" in name):
        return errors.StoreUnavailable(f"store unavailable: {name}")
    return errors.StoreError(f"store error: {name}: {exc}")


_DRIVER_MODULES = ("asyncpg", "sqlite3", "aiosqlite")


@contextlib.contextmanager
def translating(unavailable: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Raise driver errors met inside as ``StoreUnavailable`` / ``StoreError`` (``_translate``)."""
    caught: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError, OSError, TimeoutError, *unavailable)
    try:
        yield
    except errors.SoloOSError:
        raise
    except caught as exc:
        raise _translate(exc, unavailable) from exc
    except Exception as exc:
        # drivers raise their own exception trees (asyncpg for lost connections)
        if type(exc).__module__.startswith(_DRIVER_MODULES):
            raise _translate(exc, unavailable) from exc
        raise


class Database:
    """Engines, transactions, dialect hooks and the local wake-up, for the query modules."""

    def __init__(
        self, dialect: Dialect, write_engine: AsyncEngine, read_engine: AsyncEngine | None = None
    ) -> None:
        self.dialect = dialect
        self.engine = write_engine
        self.read_engine = read_engine or write_engine
        self._local_wakeup = asyncio.Event()
        self._timers = asyncio.Event()  # a sleep's end or a timeout was stored (``timer_stored``)
        self._sleeping_until: datetime | None = None  # what the wake loop sleeps towards
        #: Entered around each writing transaction (SQLite: the processes' turns at the write
        #: lock, ``_sqlite_lock``), given whether the transaction is background work; None: nothing.
        self.write_turn: Callable[[bool], contextlib.AbstractAsyncContextManager[None]] | None = None
        #: Called before waiting for work or for timers (SQLite: listen to other processes).
        self.before_wait: Callable[[], None] | None = None
        #: Called in an ingest transaction once its executions are stored: lease due ones to
        #: this process's worker (SQLite, ``_sqlite_claim``); None: the worker claims them.
        self.hand_off: HandOff | None = None

    @contextlib.asynccontextmanager
    async def write(self, *, background: bool = False) -> AsyncIterator[AsyncConnection]:
        """A writing transaction, committed at the end (``background``: nobody waits on it to
        start work; SQLite lets others go first)."""
        with translating():
            if self.write_turn is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self.write_turn(background), self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A reading connection (on SQLite, the readers' pool beside the single writer)."""
        with translating():
            async with self.read_engine.connect() as conn:
                yield conn

    def insert(self, table: sa.Table) -> Any:
        return self.dialect.insert(table)

    def json_text(self, name: str) -> sa.ColumnElement[Any]:
        return self.dialect.json_text(name)

    async def notify(self, conn: AsyncConnection) -> None:
        await self.dialect.notify(conn)

    async def lock_waits(self, conn: AsyncConnection, keys: Sequence[int], shared: bool) -> None:
        await self.dialect.lock_waits(conn, keys, shared)

    def wake_local(self) -> None:
        self._local_wakeup.set()

    async def wait_for_work(self, timeout: float) -> None:
        if self.before_wait is not None:
            self.before_wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._local_wakeup.wait(), timeout)
        self._local_wakeup.clear()

    def timer_stored(self, at: datetime | None) -> None:
        """A waiting execution's wake time ``at`` was stored, here or by another process (None:
        unknown): wake the wake loop unless it already sleeps towards an earlier one."""
        if at is None or self._sleeping_until is None or at < self._sleeping_until:
            self._timers.set()

    async def wait_for_timers(self, until: datetime | None, timeout: float) -> None:
        """Sleep towards ``until`` (at most ``timeout`` seconds) unless an earlier timer is
        stored meanwhile; one stored before this call (while the caller looked) ends it at once."""
        if self.before_wait is not None:
            self.before_wait()
        self._sleeping_until = until
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timers.wait(), timeout)
        finally:
            self._timers.clear()
            self._sleeping_until = None  # until the next sleep, every timer counts

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
