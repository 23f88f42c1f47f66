"""PostgreSQL's hot SQL (ingest, claim, finish): the ``sql/postgres/*.sql`` files, loaded once.

Batches travel as one array per column, expanded by ``unnest``. Each batch's columns are
written once, as a ``Columns`` list of (column, PostgreSQL type, how to read it from an item):
the same list renders the statement's ``unnest($1::uuid[], ...) AS t(id, ...)`` and builds
the arrays passed to it, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar

import orjson

from solo_os.core import records
from solo_os.store._rows import last_error

CHANNEL = "solo_os_work"  # LISTEN/NOTIFY channel that wakes workers
TIMERS = "solo_os_timers"  # ... and the wake loops: a wake time was stored (ISO 8601 payload)

T = TypeVar("T")


@dataclass(frozen=True)
class Columns(Generic[T]):
    """One array parameter per column, numbered from ``first``."""

    columns: tuple[tuple[str, str, Callable[[T], Any]], ...]
    first: int = 1

    @property
    def after(self) -> int:
        """The number of the first parameter after these arrays."""
        return self.first + len(self.columns)

    def unnest(self) -> str:
        """``unnest($n::type[], ...) AS t(column, ...)``."""
        arrays = ", ".join(
            f"${self.first + i}::{pg_type}[]" for i, (_, pg_type, _) in enumerate(self.columns)
        )
        names = ", ".join(name for name, _, _ in self.columns)
        return f"unnest({arrays}) AS t({names})"

    def arrays(self, items: Sequence[T]) -> list[list[Any]]:
        """The arrays to bind, in parameter order."""
        return [[get(item) for item in items] for _, _, get in self.columns]


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


EVENTS: Columns[records.NewEvent] = Columns((
    ("id", "uuid", lambda e: e.id),
    ("source", "text", lambda e: e.source),
    ("idempotency_key", "text", lambda e: e.idempotency_key),
    ("type", "text", lambda e: e.type),
    ("status", "text", lambda e: e.status),
    ("payload", "text", lambda e: e.payload),
    ("body", "bytea", lambda e: e.body),
    ("headers", "text", lambda e: _dumps(e.headers)),
    ("errors", "text", lambda e: _dumps(e.errors)),
    ("correlation_id", "text", lambda e: e.correlation_id),
    ("received_at", "timestamptz", lambda e: e.received_at),
))

ExecutionItem = tuple[records.NewEvent, records.NewExecution]

# An execution's correlation id and creation time are its event's: the statement takes them
# from the inserted event row instead of two more arrays (each array element costs the
# encoder about a microsecond, and a delivery makes two executions).
EXECUTIONS: Columns[ExecutionItem] = Columns(
    (
        ("id", "uuid", lambda ex: ex[1].id),
        ("event_id", "uuid", lambda ex: ex[0].id),
        ("handler", "text", lambda ex: ex[1].handler),
        ("max_attempts", "int", lambda ex: ex[1].max_attempts),
        ("trace_parent", "text", lambda ex: ex[0].trace_parent),
    ),
    first=EVENTS.after,
)

RESULTS: Columns[records.Finished] = Columns((
    ("id", "uuid", lambda r: r.execution_id),
    ("attempt", "int", lambda r: r.attempt),
    ("status", "text", lambda r: r.next_status),
    ("run_after", "timestamptz", lambda r: r.run_after),
    ("error", "text", last_error),
    ("started_at", "timestamptz", lambda r: r.started_at),
    ("ended_at", "timestamptz", lambda r: r.ended_at),
    ("outcome", "text", lambda r: r.outcome),
    ("error_type", "text", lambda r: r.error_type),
    ("error_message", "text", lambda r: r.error_message),
    ("traceback", "text", lambda r: r.traceback),
    ("result", "text", lambda r: r.result),
))

# The common outcome, an attempt that succeeded and returned nothing: only these travel, the
# statement fills in the rest of RESULTS' columns (a third of the arrays to encode and read).
SUCCEEDED: Columns[records.Finished] = Columns((
    ("id", "uuid", lambda r: r.execution_id),
    ("attempt", "int", lambda r: r.attempt),
    ("started_at", "timestamptz", lambda r: r.started_at),
    ("ended_at", "timestamptz", lambda r: r.ended_at),
))
_SUCCEEDED_FILL = {
    "status": "'succeeded'::text", "run_after": "NULL::timestamptz", "error": "NULL::text",
    "outcome": "'succeeded'::text", "error_type": "NULL::text", "error_message": "NULL::text",
    "traceback": "NULL::text", "result": "NULL::text",
}


def plain(r: records.Finished) -> bool:
    """Whether ``r`` is all ``SUCCEEDED`` carries (its other RESULTS columns are the fill)."""
    return (
        r.next_status == "succeeded" and r.outcome == "succeeded" and r.result is None
        and r.run_after is None and r.error_type is None and r.error_message is None
        and r.traceback is None
    )


def _succeeded_rows() -> str:
    """RESULTS' columns, by name, from the ``SUCCEEDED`` arrays."""
    carried = {name for name, _, _ in SUCCEEDED.columns}
    cols = ", ".join(
        name if name in carried else f"{_SUCCEEDED_FILL[name]} AS {name}"
        for name, _, _ in RESULTS.columns
    )
    return f"(SELECT {cols} FROM {SUCCEEDED.unnest()}) AS s"  # noqa: S608 - our own names


def _load(name: str, **fill: str) -> str:
    text = (resources.files("solo_os.store") / "sql" / "postgres" / f"{name}.sql").read_text("utf-8")
    return text.format(**fill) if fill else text


INGEST = _load(
    "ingest", events=EVENTS.unnest(), executions=EXECUTIONS.unnest(), channel=CHANNEL,
    locks=f"${EXECUTIONS.after}::bigint[]",
)
"""Parameters: ``EVENTS.arrays(events)``, then ``EXECUTIONS.arrays(executions)``, then the
wait lock keys of the batch's accepted (source, type) pairs (``_pg_workflow.lock_keys``)."""

CLAIM = _load("claim")
"""Parameters: now, limit, worker id, lease expiry, lost (bool or None)."""

_LOST_HEADS = """
    UNION
    SELECT flow_key FROM executions
    WHERE status = 'pending' AND flow_key IS NOT NULL AND flow_key <> ''
      AND losses > 0 AND run_after <= $1"""
_BY_LOST: dict[bool | None, dict[str, str]] = {
    False: {"lost": "e.losses = 0", "lost_heads": _LOST_HEADS},
    True: {"lost": "e.losses > 0", "lost_heads": ""},
    None: {"lost": "TRUE", "lost_heads": ""},
}
_ORDER = {False: "e.created_at", True: "extract(epoch FROM e.created_at) - coalesce(e.priority, 0)"}
FLOW_CLAIMS = {
    (by_priority, lost): _load("flow_claim", ord=order, **fill)
    for by_priority, order in _ORDER.items()
    for lost, fill in _BY_LOST.items()
}
"""The flow claim by (ordered by priority, ``lost``): received time, or received time minus
the priority (seconds). Parameters: now, limit, worker id, lease expiry, group names, their
limits, window size."""

FINISH = _load(
    "finish",
    results=RESULTS.unnest(),
    now=f"${RESULTS.after}",
    worker=f"${RESULTS.after + 1}",
    flow=f"${RESULTS.after + 2}::bool",
    channel=CHANNEL,
)
"""Parameters: ``RESULTS.arrays(results)``, then now, the worker id, whether flow control is on."""

FINISH_SUCCEEDED = _load(
    "finish",
    results=_succeeded_rows(),
    now=f"${SUCCEEDED.after}",
    worker=f"${SUCCEEDED.after + 1}",
    flow=f"${SUCCEEDED.after + 2}::bool",
    channel=CHANNEL,
)
"""``FINISH`` for a batch of ``plain`` outcomes only. Parameters: ``SUCCEEDED.arrays(results)``,
then now, the worker id, whether flow control is on."""
