"""Handler log lines per attempt (``execution_logs``): written when an attempt ends, read by
the admin API. Part of ``Store`` (``LogPort``). Lines go with their execution
(foreign-key cascade): retention and purges delete them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import sqlalchemy as sa

from solo_os.store import _db, _schema

lg = _schema.execution_logs


class LineLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def level(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class LogLine:
    attempt: int
    seq: int
    at: datetime
    level: str
    message: str
    fields: dict[str, Any] | None


class LogQueries:
    """Writes and reads ``execution_logs`` (``LogPort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def save_logs(self, execution_id: UUID, attempt: int, lines: Sequence[LineLike]) -> None:
        """Store an attempt's lines; a second write of the same attempt changes nothing."""
        if not lines:
            return
        rows = [
            {
                "execution_id": execution_id,
                "attempt": attempt,
                "seq": line.seq,
                "at": line.at,
                "level": line.level,
                "message": line.message,
                "fields": line.fields,
            }
            for line in lines
        ]
        stmt = self._db.insert(lg).on_conflict_do_nothing(index_elements=["execution_id", "attempt", "seq"])
        async with self._db.write() as conn:
            await conn.execute(stmt, rows)

    async def list_logs(self, execution_id: UUID, limit: int = 5000) -> list[LogLine]:
        """An execution's lines, attempt by attempt, in the order they were emitted."""
        q = (
            sa.select(lg.c.attempt, lg.c.seq, lg.c.at, lg.c.level, lg.c.message, lg.c.fields)
            .where(lg.c.execution_id == execution_id)
            .order_by(lg.c.attempt, lg.c.seq)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [
                LogLine(r.attempt, r.seq, r.at, r.level, r.message, r.fields) for r in await conn.execute(q)
            ]
