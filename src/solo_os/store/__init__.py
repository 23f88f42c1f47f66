"""Durable state: events, executions, attempts and steps, on SQLite or PostgreSQL."""

from __future__ import annotations

from solo_os import config
from solo_os.store._base import Filters, Reaped, Store, lost_error, utcnow


def connect(database_url: str, settings: config.Settings | None = None) -> Store:
    """The store for a user's ``DATABASE_URL`` (not yet connected: connections open lazily);
    PostgreSQL's pool sizes and pooler mode from ``settings`` (else the environment)."""
    url = config.driver_url(database_url)
    if url.startswith("sqlite"):
        from solo_os.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    from solo_os.store import _pool
    from solo_os.store.postgres import PostgresStore

    return PostgresStore(database_url, options=_pool.options(settings))


__all__ = ["Filters", "Reaped", "Store", "connect", "lost_error", "utcnow"]
