"""``/api/dead-letters``: list, replay and purge dead executions."""

from __future__ import annotations

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
    CursorQ,
    Limit,
    NameQ,
    SearchQ,
    bulk_filters,
    decode_cursor,
    execution_out,
    new_router,
    page,
    utc,
)
from solo_os.ops import budgets, purge, replay, select

log = structlog.get_logger("solo_os.admin")
router = new_router()



@router.get("/dead-letters", response_model=models.Page[models.ExecutionOut], tags=["dead letters"])
async def list_dead_letters(
    a: AdminDep,
    source: NameQ = None,
    type: NameQ = None,
    handler: NameQ = None,
    error: Annotated[models.ErrorText | None, Query(description="text the last error contains")] = None,
    q: SearchQ = None,
    since: Annotated[datetime | None, Query(description="died at or after")] = None,
    until: Annotated[datetime | None, Query(description="died before")] = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> models.Page[models.ExecutionOut]:
    """Dead executions, the most recently dead first."""
    f = store_mod.Filters(
        status="dead",
        source=source,
        type=type,
        handler=handler,
        error=error,
        since=utc(since, "since"),
        until=utc(until, "until"),
        limit=limit + 1,
    )
    rows = await a.store().page_executions(f, decode_cursor(cursor), order="updated", search=q)
    kept, nxt = page(rows, limit, lambda x: (x.updated_at, x.id))
    return models.Page[models.ExecutionOut](items=[execution_out(x) for x in kept], next_cursor=nxt)




def _replayed(ids: list[UUID], replayed: list[UUID], dry_run: bool) -> models.ReplayOut:
    shown = ids if dry_run else replayed
    return models.ReplayOut(
        dry_run=dry_run,
        matched=len(ids),
        replayed=len(replayed),
        ids=shown[:MAX_IDS_SHOWN],
        truncated=len(shown) > MAX_IDS_SHOWN,
    )


async def _replay(a: Admin, ids: list[UUID], dry_run: bool) -> models.ReplayOut:
    replayed: list[UUID] = []
    if not dry_run and ids:
        done = await replay.replay(a.store(), ids, budgets.of_app(a.app), store_mod.utcnow())
        replayed = list(done.replayed)
        log.info("dlq.replayed", executions=len(replayed))
    return _replayed(ids, replayed, dry_run)


@router.post("/dead-letters/replay", response_model=models.ReplayOut, tags=["dead letters"])
async def replay_dead_letters(
    a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]
) -> models.ReplayOut:
    """Replay the dead executions that match (a fresh attempt budget each; history stays)."""
    return await _replay(a, await select.matching(a.store(), bulk_filters(body), "dead"), body.dry_run)


def _purged(ids: list[UUID], changed: int, dry_run: bool) -> models.ActionOut:
    return models.ActionOut(
        dry_run=dry_run,
        matched=len(ids),
        changed=changed,
        ids=ids[:MAX_IDS_SHOWN],
        truncated=len(ids) > MAX_IDS_SHOWN,
    )


async def _purge(a: Admin, ids: list[UUID], dry_run: bool) -> models.ActionOut:
    changed = 0
    if not dry_run and ids:
        changed = await purge.purge(a.store(), ids)
        log.info("dlq.purged", executions=changed)
    return _purged(ids, changed, dry_run)


@router.post("/dead-letters/purge", response_model=models.ActionOut, tags=["dead letters"])
async def purge_dead_letters(
    a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]
) -> models.ActionOut:
    """Delete the dead executions that match, with their attempts, steps and logs (the
    events stay)."""
    return await _purge(a, await select.matching(a.store(), bulk_filters(body), "dead"), body.dry_run)


@router.post(
    "/dead-letters/{execution_id}/purge",
    response_model=models.ActionOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["dead letters"],
)
async def purge_dead_letter(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ActionOut:
    """Delete one dead execution with its history."""
    changed = await purge.purge_one(a.store(), execution_id)
    log.info("dlq.purged", executions=changed)
    return _purged([execution_id], changed, dry_run=False)


@router.post(
    "/dead-letters/{execution_id}/replay",
    response_model=models.ReplayOut,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["dead letters"],
)
async def replay_dead_letter(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ReplayOut:
    """Replay one dead execution."""
    done = await replay.replay_one(a.store(), execution_id, budgets.of_app(a.app), store_mod.utcnow())
    log.info("dlq.replayed", executions=len(done.replayed))
    return _replayed([execution_id], list(done.replayed), dry_run=False)
