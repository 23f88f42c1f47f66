"""Run again: a finished execution as a new one, or an accepted event's handlers (resend).

The earlier executions and their history stay as they are.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from solo_os import app as app_mod
from solo_os.core import records
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
    marks = [_flow_mark(application, h, event) for h in handlers]
    chosen = [(h.name, budgets.of_handler(application, h)) for h in handlers]
    ids = await store.resend(event_id, chosen, now, marks)
    if ids is None:
        raise errors.Conflict("the event changed meanwhile")
    return ids


def _flow_mark(
    application: app_mod.App, h: app_mod.Handler, event: records.Event
) -> records.FlowMark | None:
    """The flow keys and priority of ``h``'s new execution, evaluated on the stored event now
    (as at ingest), so a resent execution stays within its handler's limits; a key that cannot
    be evaluated refuses the resend (``Conflict``) instead of escaping the limit."""
    mark = h.flow_mark(application.sources[event.source].payload(event.payload))
    if mark is not None and mark.error is not None:
        raise errors.Conflict(f"handler {h.name!r}: {mark.error}")
    return mark
