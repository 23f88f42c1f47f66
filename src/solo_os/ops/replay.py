"""Replay dead executions: back to pending with a fresh attempt budget (their history stays)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.ops import budgets as budgets_mod
from solo_os.ops import errors, select
from solo_os.store import ports

CHUNK = 200


@dataclass(frozen=True)
class Replayed:
    asked: tuple[UUID, ...]  # the ids the operator chose
    replayed: tuple[UUID, ...]  # those that were dead and are pending again

    @property
    def skipped(self) -> list[UUID]:
        """Asked but not replayed: not dead (any more), or no such execution."""
        done = set(self.replayed)
        return [i for i in self.asked if i not in done]


async def replay(
    store: ports.AdminPort,
    ids: Sequence[UUID],
    budgets: budgets_mod.Budgets,
    now: datetime,
    *,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Replay the dead executions among ``ids``, ``CHUNK`` at a time. One that died because its
    flow key could not be evaluated gets its keys evaluated again with the app's handlers (the
    fix); one whose key still cannot be evaluated stays dead."""
    replayed: list[UUID] = []
    for i in range(0, len(ids), CHUNK):
        chunk = list(ids[i : i + CHUNK])
        keys, still = await _keys_again(store, budgets.app, chunk)
        chunk_ok = [x for x in chunk if x not in still]
        replayed.extend(await store.replay(chunk_ok, budgets.handlers, budgets.default, now, keys))
        if progress is not None:
            progress(len(chunk))
    return Replayed(tuple(ids), tuple(replayed))


async def _keys_again(
    store: ports.AdminPort, application: app_mod.App | None, ids: list[UUID]
) -> tuple[dict[UUID, records.FlowMark], dict[UUID, str]]:
    """Flow keys evaluated again for the executions among ``ids`` that died of a
    ``FlowKeyError``, and those whose key still cannot be evaluated."""
    keys: dict[UUID, records.FlowMark] = {}
    still: dict[UUID, str] = {}
    if application is None or not any(h.flow for h in application.handlers.values()):
        return keys, still
    for x in await store.list_executions(
        store_mod.Filters(status="dead", error="FlowKeyError: ", ids=tuple(ids), limit=0)
    ):
        h = application.handlers.get(x.handler)
        found = await store.get_event(x.event_id) if x.event_id is not None else None
        source = application.sources.get(found[0].source) if found is not None else None
        if h is None or found is None or source is None:
            continue
        mark = h.flow_mark(source.payload(found[0].payload))
        if mark is not None and mark.error is not None:
            still[x.id] = mark.error
        elif mark is not None:
            keys[x.id] = mark
    return keys, still


async def replay_one(
    store: ports.AdminPort, execution_id: UUID, budgets: budgets_mod.Budgets, now: datetime
) -> Replayed:
    """Replay one dead execution; refused (``NotFound``, ``Conflict``) when it is not dead."""
    await select.require(store, execution_id, "dead")
    _, still = await _keys_again(store, budgets.app, [execution_id])
    if execution_id in still:
        raise errors.Conflict(f"its flow key still cannot be evaluated: {still[execution_id]}")
    done = await replay(store, [execution_id], budgets, now)
    if not done.replayed:
        raise errors.Conflict("the execution changed meanwhile")
    return done
