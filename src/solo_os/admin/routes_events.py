"""``/api/events``: list, show, revalidate and resend stored deliveries."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import structlog
from fastapi import Body, Path, Query

from solo_os import store as store_mod
from solo_os.admin import models
from solo_os.admin import revalidate as revalidate_mod
from solo_os.admin._shared import (
    CONFLICT,
    NOT_FOUND,
    AdminDep,
    ApiError,
    CursorQ,
    Limit,
    NameQ,
    SearchQ,
    Since,
    body_text,
    decode_cursor,
    event_out,
    execution_out,
    new_router,
    page,
    parsed_json,
    safe_headers,
    utc,
)
from solo_os.ops import rerun as rerun_ops

log = structlog.get_logger("solo_os.admin")
router = new_router()

@router.get("/events", response_model=models.EventPage, tags=["events"])
async def list_events(
    a: AdminDep,
    status: Annotated[models.EventStatus | None, Query()] = None,
    source: NameQ = None,
    type: NameQ = None,
    since: Since = None,
    until: Since = None,
    q: SearchQ = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> models.EventPage:
    """Stored deliveries, newest first; ``q`` searches ids, keys, correlation ids and payloads."""
    f = store_mod.Filters(
        status=status,
        source=source,
        type=type,
        since=utc(since, "since"),
        until=utc(until, "until"),
        limit=limit + 1,
    )
    store = a.store()
    search = await store.search(q, f) if q is not None else None
    rows = await store.page_events(f, decode_cursor(cursor), search=search)
    kept, nxt = page(rows, limit, lambda e: (e.received_at, e.id))
    return models.EventPage(
        items=[event_out(e) for e in kept],
        next_cursor=nxt,
        search_indexed=search.indexed if search is not None else None,
        payload_searched_since=search.payload_since if search is not None else None,
    )


@router.get("/events/{event_id}", response_model=models.EventDetail, responses=NOT_FOUND, tags=["events"])
async def get_event(a: AdminDep, event_id: Annotated[UUID, Path()]) -> models.EventDetail:
    """One event: headers, payload, raw body, validation errors and its executions."""
    store = a.store()
    found = await store.get_event(event_id)
    if found is None:
        raise ApiError(404, "not_found", f"no event {event_id}")
    event, raw = found
    runs = await store.page_executions(store_mod.Filters(limit=models.MAX_PAGE), event_id=event_id)
    body, encoding = body_text(raw)
    return models.EventDetail(
        **event_out(event).model_dump(),
        headers=safe_headers(a.app, event.source, event.headers),
        payload=event.payload if event.payload is not None else parsed_json(raw),
        body=body,
        body_encoding=encoding,
        errors=event.errors,
        executions=[execution_out(x) for x in runs],
    )


def _revalidated_out(r: revalidate_mod.Revalidated) -> models.RevalidatedOut:
    return models.RevalidatedOut(
        event_id=r.event_id, outcome=r.outcome, executions=r.executions, errors=r.errors, reason=r.reason
    )


def _log_revalidated(results: list[revalidate_mod.Revalidated], dry_run: bool) -> None:
    if not dry_run and results:
        accepted = sum(1 for r in results if r.outcome == "accepted")
        log.info("events.revalidated", events=len(results), accepted=accepted)


def _revalidated(results: list[revalidate_mod.Revalidated], dry_run: bool) -> models.RevalidateOut:
    outs = [_revalidated_out(r) for r in results]
    _log_revalidated(results, dry_run)
    return models.RevalidateOut(
        dry_run=dry_run,
        matched=len(outs),
        accepted=sum(1 for r in outs if r.outcome == "accepted"),
        rejected=sum(1 for r in outs if r.outcome == "rejected"),
        skipped=sum(1 for r in outs if r.outcome == "skipped"),
        results=outs,
    )


@router.post(
    "/events/revalidate",
    response_model=models.RevalidateOut,
    tags=["events"],
)
async def revalidate_events(
    a: AdminDep, body: Annotated[models.RevalidateFilter, Body()]
) -> models.RevalidateOut:
    """Judge rejected events again with the current schemas (oldest first)."""
    f = store_mod.Filters(
        status="rejected",
        source=body.source,
        type=body.type,
        since=utc(body.since, "since"),
        until=utc(body.until, "until"),
        limit=body.limit,
    )
    store = a.store()
    ids = await store.event_ids(f, ids=body.ids)
    results = await revalidate_mod.revalidate_ids(
        a.app, store, ids, now=store_mod.utcnow(), dry_run=body.dry_run, batch=revalidate_mod.BATCH
    )
    return _revalidated(results, body.dry_run)


@router.post(
    "/events/{event_id}/resend",
    response_model=models.StartedOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["events"],
)
async def resend_event(a: AdminDep, event_id: Annotated[UUID, Path()]) -> models.StartedOut:
    """Run an accepted event's handlers again, as new executions; the earlier ones stay."""
    ids = await rerun_ops.resend(a.app, a.store(), event_id, store_mod.utcnow())
    log.info("event.resent", event_id=str(event_id), executions=len(ids))
    return models.StartedOut(execution_ids=ids)


@router.post(
    "/events/{event_id}/revalidate",
    response_model=models.RevalidatedOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["events"],
)
async def revalidate_event(
    a: AdminDep,
    event_id: Annotated[UUID, Path()],
    body: Annotated[models.RevalidateOne | None, Body()] = None,
) -> models.RevalidatedOut:
    """Judge one rejected event again; accepted, it gets its executions at once."""
    dry_run = body.dry_run if body is not None else False
    result = await revalidate_mod.revalidate_one(
        a.app, a.store(), event_id, now=store_mod.utcnow(), dry_run=dry_run
    )
    _log_revalidated([result], dry_run)
    return _revalidated_out(result)
