"""How a process connects to PostgreSQL: the connection budget, multi-host URLs, poolers.

- **Budget.** A process opens at most ``pool_size`` connections for the hot path (ingest,
  claim, finish: asyncpg), ``admin_pool_size`` for everything else (SQLAlchemy), and one for
  ``LISTEN`` (``SOLO_OS_DB_POOL_SIZE``, ``SOLO_OS_DB_ADMIN_POOL_SIZE``; 10 + 4 + 1 by default).
- **Multi-host URLs.** libpq's ``postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write``
  goes to asyncpg as it is (it tries the hosts in turn and keeps the one that accepts writes),
  and to SQLAlchemy rewritten as its ``?host=h1:5432&host=h2:5432`` form (its URL parser
  rejects the libpq form).
- **Poolers.** Behind PgBouncer in transaction mode (``SOLO_OS_DB_POOLER=transaction``; also
  Supabase's pooler, Neon's pooled endpoint, RDS Proxy) a session's prepared statements and
  ``LISTEN`` do not survive: statement caches are off, SQLAlchemy's prepared statements get
  unique names, and the listener connects to ``SOLO_OS_LISTEN_URL`` (a direct, unpooled URL)
  or, without one, workers rely on their poll interval.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import asyncpg

from solo_os import config, errors

Pooler = Literal["none", "transaction"]


@dataclass(frozen=True)
class Options:
    pool_size: int = 10
    admin_pool_size: int = 4
    pooler: Pooler = "none"
    listen_url: str | None = None

    @property
    def budget(self) -> int:
        """The most connections one process opens."""
        return self.pool_size + self.admin_pool_size + (1 if self.listens else 0)

    @property
    def listens(self) -> bool:
        return self.pooler == "none" or self.listen_url is not None


def options(settings: config.Settings | None = None) -> Options:
    """The settings' options; without settings, those of the environment where they are valid."""
    if settings is None:
        try:
            settings = config.load()
        except errors.ConfigError:
            return Options()
    listen = settings.listen_url.get_secret_value() if settings.listen_url else None
    return Options(settings.db_pool_size, settings.db_admin_pool_size, settings.db_pooler, listen)


def dsn(url: str) -> str:
    """The libpq-style URL asyncpg takes (any ``+driver`` suffix dropped)."""
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy's asyncpg URL; several hosts become repeated ``host`` query parameters."""
    parts = urlsplit(dsn(url))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return "postgresql+asyncpg://" + dsn(url).partition("://")[2]
    query = [("host", h) for h in hosts.split(",") if h] + parse_qsl(parts.query, keep_blank_values=True)
    auth = f"{userinfo}@" if userinfo else ""
    return f"postgresql+asyncpg://{auth}/{quote(parts.path.lstrip('/'))}?{urlencode(query)}"


def hosts(url: str) -> list[str]:
    """``host:port`` of every host in the URL (for messages; no credentials)."""
    netloc = urlsplit(dsn(url)).netloc.rpartition("@")[2]
    return [h if ":" in h else f"{h}:5432" for h in netloc.split(",") if h] or ["localhost:5432"]


def asyncpg_args(opts: Options) -> dict[str, Any]:
    """Keyword arguments for every asyncpg connection (hot pool and listener)."""
    args: dict[str, Any] = {"server_settings": {"application_name": "solo-os"}}
    if opts.pooler == "transaction":
        args["statement_cache_size"] = 0  # asyncpg's named statements: one session only
    return args


def engine_args(opts: Options) -> dict[str, Any]:
    """``create_async_engine`` keyword arguments for the SQLAlchemy (admin) pool."""
    connect: dict[str, Any] = {"timeout": 5, "command_timeout": 60, **asyncpg_args(opts)}
    if opts.pooler == "transaction":
        connect["prepared_statement_name_func"] = _unique_statement_name
        connect["prepared_statement_cache_size"] = 0
    return {
        "pool_size": opts.admin_pool_size,
        "max_overflow": 0,
        "pool_timeout": 10,
        "pool_recycle": 1800,
        "pool_pre_ping": opts.pooler == "transaction",
        "connect_args": connect,
    }


async def acquire(pool: Any, patience: float = 2.0) -> Any:
    """A connection of asyncpg's ``pool``. When none is idle and PostgreSQL refuses a new one
    (too many clients) while the pool holds others, wait up to ``patience`` seconds for one of
    those: a full server costs a process its growth, not its work."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await pool.acquire()
        except asyncpg.TooManyConnectionsError:
            if pool.get_size() == 0 or time.monotonic() >= deadline:
                raise
        while pool.get_idle_size() == 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - asyncpg offers no event
            await asyncio.sleep(0.01)


def _unique_statement_name() -> str:
    return f"__solo_os_{uuid.uuid4().hex}__"


REFUSED = (
    "store unavailable: PostgreSQL refused the connection: too many clients (its max_connections "
    "is used up). Each solo-os process opens up to SOLO_OS_DB_POOL_SIZE + "
    "SOLO_OS_DB_ADMIN_POOL_SIZE + 1 (15 by default): lower them, raise max_connections, or put "
    "PgBouncer in front (docs/how-to/scaling-out.md)"
)
"""What to say when PostgreSQL refuses a connection because it has too many."""


def location(url: str) -> str:
    """``PostgreSQL at h:p[,h2:p2]/db`` (no user, no password), for messages and logs."""
    return f"PostgreSQL at {','.join(hosts(url))}/{urlsplit(dsn(url)).path.lstrip('/') or '?'}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``__cause__``, ``__context__``, SQLAlchemy's ``orig``)."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(found) < 12:
        e = todo.pop(0)
        if e is None or e in found:
            continue
        found.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
        todo += [x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException)]
    return found


def reason(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words: the driver's error class and
    PostgreSQL's SQLSTATE, never a message that could carry the URL."""
    causes = _causes(exc)
    for e in causes:
        state = str(getattr(e, "sqlstate", None) or getattr(e, "pgcode", None) or "")
        name = type(e).__name__
        if state == "53300" or "TooManyConnections" in name:
            return "too many clients already (PostgreSQL's max_connections is used up)"
        if state == "57P03" or "CannotConnectNow" in name:
            return "the server is starting up, shutting down or in recovery"
        if state.startswith("57P"):
            return "the server is shutting down"
    for e in causes:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused (nothing listens there: is PostgreSQL running?)"
        if isinstance(e, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(e, TimeoutError):
            return "no answer in time"
        if isinstance(e, ConnectionError):
            return f"connection lost ({type(e).__name__})"
        if isinstance(e, OSError) and e.strerror:
            return f"cannot connect: {e.strerror}"
    return type(causes[-1]).__name__ if len(causes) > 1 else str(exc)
