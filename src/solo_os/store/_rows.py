"""Records the store hands out and how rows become them, written once for both dialects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from solo_os.core import json_decoder as _json
from solo_os.core import records
from solo_os.store import _schema

ev = _schema.events
ex = _schema.executions

EVENT_LIST_COLUMNS = (
    ev.c.id, ev.c.source, ev.c.idempotency_key, ev.c.type, ev.c.status,
    ev.c.correlation_id, ev.c.received_at,
)
EXECUTION_COLUMNS = (
    ex.c.id, ex.c.event_id, ex.c.handler, ex.c.status, ex.c.attempts, ex.c.max_attempts,
    ex.c.last_error, ex.c.correlation_id, ex.c.created_at, ex.c.updated_at, ex.c.run_after,
    ex.c.result, ex.c.parent_id,
    ex.c.flow_key, ex.c.throttle_key, ex.c.group_key,  # for the reason a pending one waits
)


@dataclass(frozen=True)
class Filters:
    """What the list commands and the admin API filter on."""

    status: str | None = None
    source: str | None = None
    type: str | None = None
    handler: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    ids: tuple[UUID, ...] | None = None


@dataclass(frozen=True)
class Reaped:
    execution_id: UUID
    attempt: int
    status: str
    worker_id: str
    handler: str = ""
    event_id: UUID | None = None
    correlation_id: str = ""
    losses: int = 1  # how many of its attempts have now been lost, this one included


def lost_error(losses: int) -> str:
    """The error of an execution dead because its attempts kept being lost."""
    return (
        f"lost {losses} times: the process running this execution died during each of its "
        "last attempts (a poison that kills its worker, e.g. os._exit or a crash)"
    )


def last_error(r: records.Finished) -> str | None:
    """The ``last_error`` an execution keeps after ``r`` (none once it succeeded)."""
    if r.next_status == "succeeded":
        return None
    text = f"{r.error_type}: {r.error_message}" if r.error_type else (r.error_message or "")
    return text[:4000]


def filtered(q: Any, f: Filters) -> Any:
    """``q`` (over executions) narrowed by ``f``'s status, handler, error, time, source, type."""
    if f.ids is not None:
        q = q.where(ex.c.id.in_(f.ids))
    if f.status:
        q = q.where(ex.c.status == f.status)
    if f.handler:
        q = q.where(ex.c.handler == f.handler)
    if f.error:
        q = q.where(ex.c.last_error.contains(f.error, autoescape=True))
    if f.since:
        q = q.where(ex.c.updated_at >= f.since)
    if f.until:
        q = q.where(ex.c.updated_at < f.until)
    if f.source or f.type:
        q = q.join(ev, ev.c.id == ex.c.event_id)
        if f.source:
            q = q.where(ev.c.source == f.source)
        if f.type:
            q = q.where(ev.c.type == f.type)
    return q


def claimed(x: Any, e: Any | None) -> records.Claimed:
    """A claimed execution from its row ``x`` and its event's row ``e`` (None: a cron run).

    Both are read by column name (``x["id"]``, ``e["payload"]``): SQLAlchemy mappings and
    asyncpg records alike; on PostgreSQL one joined record is both. The event's input is
    decoded on its own (``read_input``): one that cannot be read carries ``input_error``.
    """
    document: Any = None
    headers: dict[str, str] | None = None
    problem: str | None = None
    if e is not None:
        document, headers, problem = read_input(e["payload"], e["body"], e["headers"])
    return records.Claimed(
        id=x["id"],
        event_id=x["event_id"],
        handler=x["handler"],
        attempt=x["attempts"],
        max_attempts=x["max_attempts"],
        correlation_id=x["correlation_id"],
        source=e["source"] if e is not None else None,
        event_type=e["type"] if e is not None else None,
        idempotency_key=e["idempotency_key"] if e is not None else None,
        received_at=e["received_at"] if e is not None else None,
        headers=headers,
        document=document,
        scheduled_at=x["scheduled_at"],
        trace_parent=x["trace_parent"],
        input_error=problem,
        losses=x["losses"],
    )


def read_input(
    payload: str | bytes | None, body: bytes | None, headers: str | bytes | None
) -> tuple[Any, dict[str, str] | None, str | None]:
    """One claimed execution's stored input: ``(document, headers, problem)``.

    ``payload`` and ``headers`` are the stored JSON text; ``body`` the raw delivery, read where
    no payload could be kept (PostgreSQL's jsonb refuses ``\\u0000``, see ingress). Decoded with
    the decoder ingress used (``solo_os.core.json_decoder``). Anything that goes wrong is returned as
    ``problem`` for the worker to fail this execution with; it never escapes into the claim.
    """
    try:
        document: Any = None
        if payload is not None:
            document = _json.loads(payload)
        elif body is not None:
            document = _json.loads(body)
        decoded: Any = _json.loads(headers) if headers is not None else None
        if decoded is not None and not isinstance(decoded, dict):
            raise ValueError("stored headers are not an object")
    except Exception as exc:  # RecursionError, MemoryError, ...: whatever a stored row holds
        return None, None, f"{type(exc).__name__}: {str(exc)[:500]}"
    return document, decoded, None
