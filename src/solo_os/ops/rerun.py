"""Run again: a finished execution as a new one, or an accepted event's handlers (resend).

The earlier executions and their history stay as they are.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from solo_os import app as app_mod
from solo_os.ops import budgets, errors
from solo_os.store import ports

RERUNNABLE = ("succeeded", "cancelled")


async def rerun(
    application: app_mod.App, store: ports.AdminPort, execution_id: UUID, now: datetime
) -> UUID:
    """A new pending execution copying a succeeded (or cancelled) one; its id."""
    x = await store.get_execution(execution_id)
    if x is None:
        raise errors.NotFound(f"no execution {execution_id}")
    if x.status not in RERUNNABLE:
        raise errors.Conflict(f"the execution is {x.status}: only a finished one runs again")
    handler = application.handlers.get(x.handler)
    if handler is None:
        raise errors.Conflict(f"no handler named {x.handler!r} in this app")
    budget = budgets.of_handler(application, handler)
    new_id = await store.rerun(execution_id, budget, now, statuses=RERUNNABLE)
    if new_id is None:
        raise errors.Conflict("the execution changed meanwhile")
    return new_id


async def resend(
    application: app_mod.App, store: ports.AdminPort, event_id: UUID, now: datetime
) -> list[UUID]:
    """New pending executions of an accepted event, one per handler that takes it; their ids."""
    found = await store.get_event(event_id)
    if found is None:
        raise errors.NotFound(f"no event {event_id}")
    event = found[0]
    if event.status != "accepted":
        raise errors.Conflict("the event was rejected: revalidate it instead")
    handlers = application.handlers_for(event.source, event.type)
    if not handlers:
        raise errors.Conflict(f"no handler of this app takes {event.source} {event.type}")
    ids = await store.resend(event_id, [(h.name, budgets.of_handler(application, h)) for h in handlers], now)
    if ids is None:
        raise errors.Conflict("the event changed meanwhile")
    return ids
