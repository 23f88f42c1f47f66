"""An execution's timeline: each step, sleep, wait, send and invoke, in the order reached
(``executions show``, ``GET /api/executions/{id}``, the dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from solo_os.store import _admin_records, ports


class TimelineStore(Protocol):
    async def list_steps(self, execution_id: UUID) -> list[_admin_records.Step]: ...

    @property
    def workflow(self) -> ports.WorkflowPort: ...


@dataclass(frozen=True)
class Entry:
    """One memoized call. ``status``: ``done``, ``waiting`` (what the execution waits for
    now), ``timed_out``. ``waits_for`` says what a wait or invoke waits for."""

    kind: str  # step, sleep, wait, send, invoke
    name: str
    status: str
    at: datetime
    ended_at: datetime | None = None
    until: datetime | None = None
    waits_for: dict[str, Any] | None = None
    event_id: UUID | None = None
    child_id: UUID | None = None
    result: Any = None


async def timeline(store: TimelineStore, execution_id: UUID) -> list[Entry]:
    entries = [
        Entry("step", s.name, "done", s.created_at, s.created_at, result=s.result)
        for s in await store.list_steps(execution_id)
    ]
    for c in (await store.workflow.load_calls(execution_id)).values():
        waits_for = None
        if c.kind == "wait":
            waits_for = {"source": c.source, "type": c.type, "match": c.match or {}}
        elif c.kind == "invoke":
            waits_for = {"child": str(c.child_id)}
        entries.append(
            Entry(
                c.kind, c.name, c.status, c.created_at, c.ended_at, c.wake_at, waits_for,
                c.event_id, c.child_id, c.result,
            )
        )
    return sorted(entries, key=lambda e: (e.at, e.ended_at is None, e.name))
