"""Cancel pending or waiting executions (one that is already running is not stopped)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from solo_os.ops import errors, select
from solo_os.store import ports


async def cancel(store: ports.OperatorPort, ids: Sequence[UUID], now: datetime) -> list[UUID]:
    """Cancel those of ``ids`` that are pending or waiting now; the ids cancelled."""
    if not ids:
        return []
    return await store.cancel_pending(list(ids), now)


async def cancel_one(store: ports.AdminPort, execution_id: UUID, now: datetime) -> list[UUID]:
    """Cancel one pending or waiting execution; refused (``NotFound``, ``Conflict``) otherwise."""
    status = (await store.execution_statuses([execution_id])).get(execution_id)
    await select.require(store, execution_id, "waiting" if status == "waiting" else "pending")
    cancelled = await cancel(store, [execution_id], now)
    if not cancelled:
        raise errors.Conflict("the execution started or changed meanwhile")
    return cancelled
