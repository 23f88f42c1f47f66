"""Purge dead executions: delete them with their attempts, steps and logs (the events stay)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from solo_os.ops import errors, select
from solo_os.store import ports

CHUNK = 200


async def purge(
    store: ports.OperatorPort, ids: Sequence[UUID], *, progress: Callable[[int], None] | None = None
) -> int:
    """Delete the dead (or cancelled) executions among ``ids``, ``CHUNK`` at a time; how many."""
    purged = 0
    for i in range(0, len(ids), CHUNK):
        chunk = list(ids[i : i + CHUNK])
        purged += await store.purge(chunk)
        if progress is not None:
            progress(len(chunk))
    return purged


async def purge_one(store: ports.AdminPort, execution_id: UUID) -> int:
    """Delete one dead execution; refused (``NotFound``, ``Conflict``) when it is not dead."""
    await select.require(store, execution_id, "dead")
    purged = await purge(store, [execution_id])
    if not purged:
        raise errors.Conflict("the execution changed meanwhile")
    return purged
