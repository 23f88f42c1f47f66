"""Which executions a bulk operation acts on: ids given, or every match of a filter."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from uuid import UUID

from solo_os import store as store_mod
from solo_os.ops import errors
from solo_os.store import ports


async def matching(store: ports.ReadPort, f: store_mod.Filters, status: str) -> list[UUID]:
    """Ids of the executions in ``status`` that match ``f``, oldest change first."""
    return await store.matching_ids(dataclasses.replace(f, status=status))


async def among(store: ports.ReadPort, ids: Sequence[UUID], status: str) -> list[UUID]:
    """Those of ``ids`` that exist and are in ``status`` now."""
    if not ids:
        return []
    return await store.matching_ids(store_mod.Filters(status=status, ids=tuple(ids), limit=0))


async def require(store: ports.AdminPort, execution_id: UUID, status: str) -> None:
    """Refuse unless ``execution_id`` exists and is in ``status``."""
    found = (await store.execution_statuses([execution_id])).get(execution_id)
    if found is None:
        raise errors.NotFound(f"no execution {execution_id}")
    if found != status:
        raise errors.Conflict(f"the execution is {found}, not {status}")


async def missing(store: ports.AdminPort, ids: Sequence[UUID]) -> list[UUID]:
    """Those of ``ids`` that do not exist (one query)."""
    found = await store.execution_statuses(list(ids))
    return [i for i in ids if i not in found]
