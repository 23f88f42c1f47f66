"""Revalidate rejected events against the app's current schemas.

A rejected event is judged again exactly as a redelivery would be: ``ingress.build_event``
over its stored headers and raw body, under the idempotency key it was stored with, then
``store.ingest``, whose rejected-to-accepted upgrade turns it into an accepted event with its
executions in one transaction. An event that still fails stays rejected with the new errors.

One vocabulary: ``accepted`` (or, in a dry run, would be), ``rejected`` (still), ``skipped``
with a ``reason`` (``not_rejected``: accepted meanwhile; ``unknown_source``;
``not_an_event``). The CLI words its output its own way (``still_rejected``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.ops import errors
from solo_os.runtime import ingress
from solo_os.sources import _base as sources_base
from solo_os.store import ports

BATCH = 200


class RevalidatePort(ports.IngestPort, ports.AdminPort, Protocol):
    """Loads rejected events with their bodies (admin reads) and ingests them again."""


@dataclass(frozen=True)
class Revalidated:
    event_id: UUID
    outcome: Literal["accepted", "rejected", "skipped"]
    executions: int = 0
    errors: list[dict[str, Any]] | None = None
    reason: str | None = None
    type: str | None = None  # the event type as judged again (None when skipped)


def _rebuild(
    application: app_mod.App, event: records.Event, body: bytes, now: datetime
) -> records.NewEvent | Revalidated:
    if event.status != "rejected":
        return Revalidated(event.id, "skipped", reason="not_rejected")
    source = application.sources.get(event.source)
    if source is None:
        return Revalidated(event.id, "skipped", reason="unknown_source")
    built = ingress.build_event(
        application,
        event.source,
        source,
        sources_base.DictHeaders(event.headers or {}),
        body,
        now,
        lambda _key: event.correlation_id,  # the delivery keeps its thread through the logs
        key=event.idempotency_key,
    )
    if isinstance(built, dict):  # a provider handshake, not an event
        return Revalidated(event.id, "skipped", reason="not_an_event")
    return built


async def revalidate(
    application: app_mod.App,
    store: ports.IngestPort,
    events: Sequence[tuple[records.Event, bytes]],
    *,
    now: datetime,
    dry_run: bool = False,
) -> list[Revalidated]:
    """Judge each rejected event again; store the verdicts unless ``dry_run``. In order."""
    verdicts: dict[UUID, Revalidated] = {}
    pending: list[tuple[UUID, records.NewEvent]] = []
    for event, body in events:
        rebuilt = _rebuild(application, event, body, now)
        if isinstance(rebuilt, Revalidated):
            verdicts[event.id] = rebuilt
        elif dry_run:
            verdicts[event.id] = Revalidated(
                event.id, rebuilt.status, len(rebuilt.executions), rebuilt.errors, type=rebuilt.type
            )
        else:
            pending.append((event.id, rebuilt))
    for i in range(0, len(pending), BATCH):
        chunk = pending[i : i + BATCH]
        results = await store.ingest([new for _, new in chunk])
        for (event_id, new), result in zip(chunk, results, strict=True):
            if result.outcome == "duplicate":
                # accepted meanwhile (a redelivery or another revalidation got there first)
                verdicts[event_id] = Revalidated(event_id, "skipped", reason="not_rejected")
            elif result.outcome == "accepted":
                verdicts[event_id] = Revalidated(event_id, "accepted", result.executions, type=new.type)
            else:
                verdicts[event_id] = Revalidated(event_id, "rejected", errors=new.errors, type=new.type)
    return [verdicts[event.id] for event, _ in events]


async def revalidate_ids(
    application: app_mod.App,
    store: RevalidatePort,
    ids: Sequence[UUID],
    *,
    now: datetime,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[Revalidated]:
    """Judge the events ``ids`` (oldest first), loading their bodies ``batch`` at a time so a
    run over many large deliveries stays small. An id no longer stored has no verdict."""
    results: list[Revalidated] = []
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        events = await store.events_with_bodies(store_mod.Filters(limit=0), ids=chunk)
        results.extend(await revalidate(application, store, events, now=now, dry_run=dry_run))
        if progress is not None:
            progress(len(chunk))
    return results


async def revalidate_one(
    application: app_mod.App, store: RevalidatePort, event_id: UUID, *, now: datetime, dry_run: bool
) -> Revalidated:
    """Judge one rejected event; refused (``NotFound``, ``Conflict``) otherwise."""
    events = await store.events_with_bodies(store_mod.Filters(limit=0), ids=[event_id])
    if not events:
        raise errors.NotFound(f"no event {event_id}")
    if events[0][0].status != "rejected":
        raise errors.Conflict("the event is not rejected")
    [result] = await revalidate(application, store, events, now=now, dry_run=dry_run)
    if result.reason == "not_rejected":
        raise errors.Conflict("the event was accepted meanwhile")
    return result
