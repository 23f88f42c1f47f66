"""Replay dead executions: back to pending with a fresh attempt budget (their history stays)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

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
    store: ports.OperatorPort,
    ids: Sequence[UUID],
    budgets: budgets_mod.Budgets,
    now: datetime,
    *,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Replay the dead executions among ``ids``, ``CHUNK`` at a time."""
    replayed: list[UUID] = []
    for i in range(0, len(ids), CHUNK):
        chunk = list(ids[i : i + CHUNK])
        replayed.extend(await store.replay(chunk, budgets.handlers, budgets.default, now))
        if progress is not None:
            progress(len(chunk))
    return Replayed(tuple(ids), tuple(replayed))


async def replay_one(
    store: ports.AdminPort, execution_id: UUID, budgets: budgets_mod.Budgets, now: datetime
) -> Replayed:
    """Replay one dead execution; refused (``NotFound``, ``Conflict``) when it is not dead."""
    await select.require(store, execution_id, "dead")
    done = await replay(store, [execution_id], budgets, now)
    if not done.replayed:
        raise errors.Conflict("the execution changed meanwhile")
    return done
