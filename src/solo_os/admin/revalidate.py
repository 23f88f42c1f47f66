"""Revalidate rejected events against the app's current schemas (the API's side of it).

A rejected event is judged again exactly as a redelivery would be: ``ingress.build_event``
over its stored headers and raw body, under the idempotency key it was stored with, then
``store.ingest``, whose rejected-to-accepted upgrade turns it into an accepted event with its
executions in one transaction. An event that still fails stays rejected with the new errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import structlog

from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.runtime import ingress
from solo_os.sources import _base as sources_base

log = structlog.get_logger("solo_os.admin")
BATCH = 200


@dataclass(frozen=True)
class Revalidated:
    event_id: UUID
    outcome: Literal["accepted", "rejected", "skipped"]
    executions: int = 0
    errors: list[dict[str, Any]] | None = None
    reason: str | None = None


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
        lambda _key: event.correlation_id,
        key=event.idempotency_key,
    )
    if isinstance(built, dict):  # a provider handshake, not an event
        return Revalidated(event.id, "skipped", reason="not_an_event")
    return built


async def revalidate(
    application: app_mod.App,
    store: store_mod.Store,
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
                event.id, rebuilt.status, len(rebuilt.executions), rebuilt.errors
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
                verdicts[event_id] = Revalidated(event_id, "accepted", result.executions)
            else:
                verdicts[event_id] = Revalidated(event_id, "rejected", errors=new.errors)
    accepted = sum(1 for v in verdicts.values() if v.outcome == "accepted")
    if not dry_run and verdicts:
        log.info("events.revalidated", events=len(verdicts), accepted=accepted)
    return [verdicts[event.id] for event, _ in events]
