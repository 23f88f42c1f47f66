"""``/api/executions``: list, show, re-run and cancel executions."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import Body, Path, Query

from solo_os import store as store_mod
from solo_os.admin import models
from solo_os.admin._shared import (
    CONFLICT,
    MAX_IDS_SHOWN,
    NOT_FOUND,
    Admin,
    AdminDep,
    ApiError,
    CursorQ,
    KindQ,
    Limit,
    NameQ,
    SearchQ,
    bulk_filters,
    decode_cursor,
    event_out,
    execution_out,
    new_router,
    page,
    utc,
)
from solo_os.ops import cancel as cancel_ops
from solo_os.ops import rerun as rerun_ops
from solo_os.ops import select, timeline

log = structlog.get_logger("solo_os.admin")
router = new_router()


@router.get("/executions", response_model=models.Page[models.ExecutionOut], tags=["executions"])
async def list_executions(
    a: AdminDep,
    status: Annotated[models.ExecutionStatus | None, Query()] = None,
    source: NameQ = None,
    type: NameQ = None,
    handler: NameQ = None,
    error: Annotated[models.ErrorText | None, Query(description="text the last error contains")] = None,
    event_id: Annotated[UUID | None, Query()] = None,
    kind: KindQ = None,
    q: SearchQ = None,
    since: Annotated[datetime | None, Query(description="last changed at or after")] = None,
    until: Annotated[datetime | None, Query(description="last changed before")] = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> models.Page[models.ExecutionOut]:
    """Executions, newest first (by creation); ``q`` matches the execution's id, its event's
    id or idempotency key, or the correlation id."""
    f = store_mod.Filters(
        status=status,
        source=source,
        type=type,
        handler=handler,
        error=error,
        since=utc(since, "since"),
        until=utc(until, "until"),
        limit=limit + 1,
    )
    rows = await a.store().page_executions(f, decode_cursor(cursor), event_id=event_id, kind=kind, search=q)
    kept, nxt = page(rows, limit, lambda x: (x.created_at, x.id))
    return models.Page[models.ExecutionOut](items=[execution_out(x) for x in kept], next_cursor=nxt)


@router.get(
    "/executions/{execution_id}",
    response_model=models.ExecutionDetail,
    responses=NOT_FOUND,
    tags=["executions"],
)
async def get_execution(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ExecutionDetail:
    """One execution with every attempt (errors, tracebacks) and its durable steps."""
    store = a.store()
    x = await store.get_execution(execution_id)
    if x is None:
        raise ApiError(404, "not_found", f"no execution {execution_id}")
    attempts = await store.list_attempts(execution_id)
    steps = await store.list_steps(execution_id)
    logs = await store.list_logs(execution_id)
    history = [
        models.AttemptOut(
            **{k: v for k, v in asdict(t).items() if k != "execution_id"},
            duration_ms=round((t.ended_at - t.started_at).total_seconds() * 1000, 3),
        )
        for t in attempts
    ]
    event = None
    if x.event_id is not None:
        found = await store.get_event(x.event_id)
        event = event_out(found[0]) if found is not None else None
    out = execution_out(x).model_dump()
    out["duration_ms"] = round(sum(t.duration_ms for t in history), 3) if history else None
    return models.ExecutionDetail(
        **out,
        event=event,
        attempt_history=history,
        steps=[models.StepOut(**asdict(s)) for s in steps],
        timeline=[models.TimelineEntryOut(**asdict(e)) for e in await timeline.timeline(store, execution_id)],
        children=await store.workflow.children_of(execution_id),
        logs=[models.LogLineOut(**asdict(line)) for line in logs],
    )


@router.post(
    "/executions/{execution_id}/rerun",
    response_model=models.StartedOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["executions"],
)
async def rerun_execution(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.StartedOut:
    """Run a succeeded (or cancelled) execution again, as a new execution; the old one stays."""
    new_id = await rerun_ops.rerun(a.app, a.store(), execution_id, store_mod.utcnow())
    log.info("execution.rerun", execution_id=str(execution_id), new_execution_id=str(new_id))
    return models.StartedOut(execution_ids=[new_id])


def _cancelled(ids: list[UUID], changed: list[UUID], dry_run: bool) -> models.ActionOut:
    shown = ids if dry_run else changed
    return models.ActionOut(
        dry_run=dry_run,
        matched=len(ids),
        changed=len(changed),
        ids=shown[:MAX_IDS_SHOWN],
        truncated=len(shown) > MAX_IDS_SHOWN,
    )


async def _cancel(a: Admin, ids: list[UUID], dry_run: bool) -> models.ActionOut:
    changed: list[UUID] = []
    if not dry_run and ids:
        changed = await cancel_ops.cancel(a.store(), ids, store_mod.utcnow())
        log.info("executions.cancelled", executions=len(changed))
    return _cancelled(ids, changed, dry_run)


@router.post("/executions/cancel", response_model=models.ActionOut, tags=["executions"])
async def cancel_executions(a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]) -> models.ActionOut:
    """Cancel the pending executions that match (a running one is not stopped)."""
    ids = await select.matching(a.store(), bulk_filters(body), "pending")
    return await _cancel(a, ids, body.dry_run)


@router.post(
    "/executions/{execution_id}/cancel",
    response_model=models.ActionOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["executions"],
)
async def cancel_execution(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ActionOut:
    """Cancel one pending execution."""
    changed = await cancel_ops.cancel_one(a.store(), execution_id, store_mod.utcnow())
    log.info("executions.cancelled", executions=len(changed))
    return _cancelled(changed, changed, dry_run=False)
