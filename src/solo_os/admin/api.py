"""The admin API, ``/api``: events, executions, dead letters, sources and stats.

A FastAPI application mounted into the runtime's Starlette app behind ``auth.RequireAdmin``,
which has already authenticated every request that reaches a route here. Lists are keyset
pages, newest first: ``next_cursor`` is an opaque string to pass back as ``?cursor=``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
import structlog
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.admin import auth, models
from solo_os.admin import revalidate as revalidate_mod
from solo_os.core import records
from solo_os.runtime import scheduler as scheduler_mod

log = structlog.get_logger("solo_os.admin")
T = TypeVar("T")

# window: (length, bucket seconds). Buckets start at whole multiples of their size in UTC
# (whole hours for 24h), the last one being the current, partial one: a chart's bars and
# labels fall on round times instead of sliding with the clock.
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 300),
    "24h": (timedelta(hours=24), 3600),
    "7d": (timedelta(days=7), 7200),
    "30d": (timedelta(days=30), 43200),
}
MAX_IDS_SHOWN = 1000
RERUNNABLE = ("succeeded", "cancelled")


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(message or error)
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class Admin:
    """What the routes work on."""

    app: app_mod.App
    store: Callable[[], store_mod.Store]


def admin(request: Request) -> Admin:
    found: Admin = request.app.state.admin
    return found


def principal(request: Request) -> auth.Principal:
    found: auth.Principal = request.scope["state"]["admin"]
    return found


AdminDep = Annotated[Admin, Depends(admin)]
Limit = Annotated[int, Query(ge=1, le=models.MAX_PAGE, description="page size")]
CursorQ = Annotated[str | None, Query(max_length=200, description="next_cursor of the last page")]
NameQ = Annotated[models.Name | None, Query()]
Since = Annotated[datetime | None, Query(description="ISO 8601; UTC when it names no zone")]
SearchQ = Annotated[
    models.SearchText | None,
    Query(description="an id, idempotency key or correlation id (exact), or payload text (events)"),
]
KindQ = Annotated[models.ExecutionKind | None, Query(description="webhook runs or cron runs")]

_errors = {
    400: {"model": models.ErrorOut, "description": "a bad cursor or time"},
    401: {"model": models.ErrorOut, "description": "no valid admin token or session"},
    403: {"model": models.ErrorOut, "description": "CSRF check failed"},
    503: {"model": models.ErrorOut, "description": "the store is unreachable"},
}
router = APIRouter(responses=_errors)  # type: ignore[arg-type]
_not_found: Any = {404: {"model": models.ErrorOut, "description": "no such record"}}
_conflict: Any = {409: {"model": models.ErrorOut, "description": "not in a state that allows it"}}


# --- helpers ---------------------------------------------------------------------------------


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, "invalid_time", f"{name} is out of range") from None


def encode_cursor(moment: datetime, last_id: UUID) -> str:
    raw = f"{moment.astimezone(UTC).isoformat()}|{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment_text, id_text = raw.split("|")
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment.astimezone(UTC), UUID(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def _page(
    items: list[T], limit: int, key: Callable[[T], tuple[datetime, UUID]]
) -> tuple[list[T], str | None]:
    """The first ``limit`` items and the cursor after them (one extra row was fetched)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode_cursor(*key(kept[-1]))


def _event_out(e: records.Event) -> models.EventOut:
    return models.EventOut(
        id=e.id,
        source=e.source,
        type=e.type,
        idempotency_key=e.idempotency_key,
        status=e.status,
        correlation_id=e.correlation_id,
        received_at=e.received_at,
    )


def _execution_out(x: records.Execution) -> models.ExecutionOut:
    return models.ExecutionOut(**asdict(x), kind="webhook" if x.event_id is not None else "cron")


_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def _safe_headers(application: app_mod.App, source: str, headers: dict[str, str] | None) -> dict[str, str]:
    """Stored headers, minus anything secret-looking (ingress already dropped signatures).

    A second filter on the way out: rows stored by an older version, or by a source whose
    ``secret_headers`` grew since, show no credential either.
    """
    src = application.sources.get(source)
    drop = _CREDENTIAL_HEADERS | (src.secret_headers if src is not None else frozenset())
    return {
        k: v for k, v in (headers or {}).items() if k.lower() not in drop and "signature" not in k.lower()
    }


def _body(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _parsed(raw: bytes) -> Any:
    """The JSON of a body the store kept only raw (a rejected event's), or None."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _budgets(application: app_mod.App) -> dict[str, int]:
    return {
        name: application.policy(h).max_attempts or application.settings.max_retry_attempts
        for name, h in application.handlers.items()
    }


# --- session ------------------------------------------------------------------------------


@router.get("/session", response_model=models.SessionOut, tags=["session"])
async def session(request: Request) -> models.SessionOut:
    """How this request is authenticated; for a dashboard session, its CSRF token."""
    who = principal(request)
    if who.session is None:
        return models.SessionOut(method=who.method)
    return models.SessionOut(
        method="session",
        csrf_token=who.session.csrf,
        expires_at=datetime.fromtimestamp(who.session.expires_at, UTC),
    )


# --- events -------------------------------------------------------------------------------


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
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        limit=limit + 1,
    )
    store = a.store()
    search = await store.search(q, f) if q is not None else None
    rows = await store.page_events(f, decode_cursor(cursor), search=search)
    kept, nxt = _page(rows, limit, lambda e: (e.received_at, e.id))
    return models.EventPage(
        items=[_event_out(e) for e in kept],
        next_cursor=nxt,
        search_indexed=search.indexed if search is not None else None,
        payload_searched_since=search.payload_since if search is not None else None,
    )


@router.get("/events/{event_id}", response_model=models.EventDetail, responses=_not_found, tags=["events"])
async def get_event(a: AdminDep, event_id: Annotated[UUID, Path()]) -> models.EventDetail:
    """One event: headers, payload, raw body, validation errors and its executions."""
    store = a.store()
    found = await store.get_event(event_id)
    if found is None:
        raise ApiError(404, "not_found", f"no event {event_id}")
    event, raw = found
    runs = await store.page_executions(store_mod.Filters(limit=models.MAX_PAGE), event_id=event_id)
    body, encoding = _body(raw)
    return models.EventDetail(
        **_event_out(event).model_dump(),
        headers=_safe_headers(a.app, event.source, event.headers),
        payload=event.payload if event.payload is not None else _parsed(raw),
        body=body,
        body_encoding=encoding,
        errors=event.errors,
        executions=[_execution_out(x) for x in runs],
    )


def _revalidated(results: list[revalidate_mod.Revalidated], dry_run: bool) -> models.RevalidateOut:
    outs = [models.RevalidatedOut(**asdict(r)) for r in results]
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
        since=_utc(body.since, "since"),
        until=_utc(body.until, "until"),
        limit=body.limit,
    )
    store = a.store()
    ids = await store.event_ids(f, ids=body.ids)
    results: list[revalidate_mod.Revalidated] = []
    now = store_mod.utcnow()
    # Bodies are loaded a batch at a time: a run over many large deliveries stays small.
    for i in range(0, len(ids), revalidate_mod.BATCH):
        chunk = ids[i : i + revalidate_mod.BATCH]
        events = await store.events_with_bodies(store_mod.Filters(limit=0), ids=chunk)
        results.extend(await revalidate_mod.revalidate(a.app, store, events, now=now, dry_run=body.dry_run))
    return _revalidated(results, body.dry_run)


@router.post(
    "/events/{event_id}/resend",
    response_model=models.StartedOut,
    responses={**_not_found, **_conflict},
    tags=["events"],
)
async def resend_event(a: AdminDep, event_id: Annotated[UUID, Path()]) -> models.StartedOut:
    """Run an accepted event's handlers again, as new executions; the earlier ones stay."""
    store = a.store()
    found = await store.get_event(event_id)
    if found is None:
        raise ApiError(404, "not_found", f"no event {event_id}")
    event = found[0]
    if event.status != "accepted":
        raise ApiError(409, "conflict", "the event was rejected: revalidate it instead")
    handlers = a.app.handlers_for(event.source, event.type)
    if not handlers:
        raise ApiError(409, "conflict", f"no handler of this app takes {event.source} {event.type}")
    budgets = [(h.name, a.app.policy(h).max_attempts or a.app.settings.max_retry_attempts) for h in handlers]
    ids = await store.resend(event_id, budgets, store_mod.utcnow())
    if ids is None:
        raise ApiError(409, "conflict", "the event changed meanwhile")
    log.info("event.resent", event_id=str(event_id), executions=len(ids))
    return models.StartedOut(execution_ids=ids)


@router.post(
    "/events/{event_id}/revalidate",
    response_model=models.RevalidatedOut,
    responses={**_not_found, **_conflict},
    tags=["events"],
)
async def revalidate_event(
    a: AdminDep,
    event_id: Annotated[UUID, Path()],
    body: Annotated[models.RevalidateOne | None, Body()] = None,
) -> models.RevalidatedOut:
    """Judge one rejected event again; accepted, it gets its executions at once."""
    dry_run = body.dry_run if body is not None else False
    store = a.store()
    events = await store.events_with_bodies(store_mod.Filters(limit=0), ids=[event_id])
    if not events:
        raise ApiError(404, "not_found", f"no event {event_id}")
    if events[0][0].status != "rejected":
        raise ApiError(409, "conflict", "the event is not rejected")
    [result] = await revalidate_mod.revalidate(a.app, store, events, now=store_mod.utcnow(), dry_run=dry_run)
    if result.reason == "not_rejected":
        raise ApiError(409, "conflict", "the event was accepted meanwhile")
    return models.RevalidatedOut(**asdict(result))


# --- executions ---------------------------------------------------------------------------


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
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        limit=limit + 1,
    )
    rows = await a.store().page_executions(f, decode_cursor(cursor), event_id=event_id, kind=kind, search=q)
    kept, nxt = _page(rows, limit, lambda x: (x.created_at, x.id))
    return models.Page[models.ExecutionOut](items=[_execution_out(x) for x in kept], next_cursor=nxt)


@router.get(
    "/executions/{execution_id}",
    response_model=models.ExecutionDetail,
    responses=_not_found,
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
        event = _event_out(found[0]) if found is not None else None
    out = _execution_out(x).model_dump()
    out["duration_ms"] = round(sum(t.duration_ms for t in history), 3) if history else None
    return models.ExecutionDetail(
        **out,
        event=event,
        attempt_history=history,
        steps=[models.StepOut(**asdict(s)) for s in steps],
        logs=[models.LogLineOut(**asdict(line)) for line in logs],
    )


@router.post(
    "/executions/{execution_id}/rerun",
    response_model=models.StartedOut,
    responses={**_not_found, **_conflict},
    tags=["executions"],
)
async def rerun_execution(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.StartedOut:
    """Run a succeeded (or cancelled) execution again, as a new execution; the old one stays."""
    store = a.store()
    x = await store.get_execution(execution_id)
    if x is None:
        raise ApiError(404, "not_found", f"no execution {execution_id}")
    if x.status not in RERUNNABLE:
        raise ApiError(409, "conflict", f"the execution is {x.status}: only a finished one runs again")
    handler = a.app.handlers.get(x.handler)
    if handler is None:
        raise ApiError(409, "conflict", f"no handler named {x.handler!r} in this app")
    budget = a.app.policy(handler).max_attempts or a.app.settings.max_retry_attempts
    new_id = await store.rerun(execution_id, budget, store_mod.utcnow(), statuses=RERUNNABLE)
    if new_id is None:
        raise ApiError(409, "conflict", "the execution changed meanwhile")
    log.info("execution.rerun", execution_id=str(execution_id), new_execution_id=str(new_id))
    return models.StartedOut(execution_ids=[new_id])


async def _cancel(a: Admin, ids: list[UUID], dry_run: bool) -> models.ActionOut:
    changed: list[UUID] = []
    if not dry_run and ids:
        changed = await a.store().cancel_pending(ids, store_mod.utcnow())
        log.info("executions.cancelled", executions=len(changed))
    shown = ids if dry_run else changed
    return models.ActionOut(
        dry_run=dry_run,
        matched=len(ids),
        changed=len(changed),
        ids=shown[:MAX_IDS_SHOWN],
        truncated=len(shown) > MAX_IDS_SHOWN,
    )


def _bulk_filters(body: models.ExecutionFilter, status: str) -> store_mod.Filters:
    return store_mod.Filters(
        status=status,
        source=body.source,
        type=body.type,
        handler=body.handler,
        error=body.error,
        since=_utc(body.since, "since"),
        until=_utc(body.until, "until"),
        limit=body.limit,
        ids=tuple(dict.fromkeys(body.ids)) if body.ids is not None else None,
    )


@router.post("/executions/cancel", response_model=models.ActionOut, tags=["executions"])
async def cancel_executions(a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]) -> models.ActionOut:
    """Cancel the pending executions that match (a running one is not stopped)."""
    ids = await a.store().matching_ids(_bulk_filters(body, "pending"))
    return await _cancel(a, ids, body.dry_run)


@router.post(
    "/executions/{execution_id}/cancel",
    response_model=models.ActionOut,
    responses={**_not_found, **_conflict},
    tags=["executions"],
)
async def cancel_execution(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ActionOut:
    """Cancel one pending execution."""
    status = (await a.store().execution_statuses([execution_id])).get(execution_id)
    if status is None:
        raise ApiError(404, "not_found", f"no execution {execution_id}")
    if status != "pending":
        raise ApiError(409, "conflict", f"the execution is {status}, not pending")
    out = await _cancel(a, [execution_id], dry_run=False)
    if not out.changed:
        raise ApiError(409, "conflict", "the execution started or changed meanwhile")
    return out


# --- dead letters -------------------------------------------------------------------------


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
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        limit=limit + 1,
    )
    rows = await a.store().page_executions(f, decode_cursor(cursor), order="updated", search=q)
    kept, nxt = _page(rows, limit, lambda x: (x.updated_at, x.id))
    return models.Page[models.ExecutionOut](items=[_execution_out(x) for x in kept], next_cursor=nxt)


async def _replay(a: Admin, ids: list[UUID], dry_run: bool) -> models.ReplayOut:
    store = a.store()
    replayed: list[UUID] = []
    if not dry_run and ids:
        replayed = await store.replay(
            ids,
            budgets=_budgets(a.app),
            default_budget=a.app.settings.max_retry_attempts,
            now=store_mod.utcnow(),
        )
        log.info("dlq.replayed", executions=len(replayed))
    shown = ids if dry_run else replayed
    return models.ReplayOut(
        dry_run=dry_run,
        matched=len(ids),
        replayed=len(replayed),
        ids=shown[:MAX_IDS_SHOWN],
        truncated=len(shown) > MAX_IDS_SHOWN,
    )


@router.post("/dead-letters/replay", response_model=models.ReplayOut, tags=["dead letters"])
async def replay_dead_letters(
    a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]
) -> models.ReplayOut:
    """Replay the dead executions that match (a fresh attempt budget each; history stays)."""
    return await _replay(a, await a.store().matching_ids(_bulk_filters(body, "dead")), body.dry_run)


async def _purge(a: Admin, ids: list[UUID], dry_run: bool) -> models.ActionOut:
    changed = 0
    if not dry_run and ids:
        changed = await a.store().purge(ids)
        log.info("dlq.purged", executions=changed)
    return models.ActionOut(
        dry_run=dry_run,
        matched=len(ids),
        changed=changed,
        ids=ids[:MAX_IDS_SHOWN],
        truncated=len(ids) > MAX_IDS_SHOWN,
    )


@router.post("/dead-letters/purge", response_model=models.ActionOut, tags=["dead letters"])
async def purge_dead_letters(
    a: AdminDep, body: Annotated[models.ExecutionFilter, Body()]
) -> models.ActionOut:
    """Delete the dead executions that match, with their attempts, steps and logs (the
    events stay)."""
    return await _purge(a, await a.store().matching_ids(_bulk_filters(body, "dead")), body.dry_run)


@router.post(
    "/dead-letters/{execution_id}/purge",
    response_model=models.ActionOut,
    responses={**_not_found, **_conflict},
    tags=["dead letters"],
)
async def purge_dead_letter(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ActionOut:
    """Delete one dead execution with its history."""
    status = (await a.store().execution_statuses([execution_id])).get(execution_id)
    if status is None:
        raise ApiError(404, "not_found", f"no execution {execution_id}")
    if status != "dead":
        raise ApiError(409, "conflict", f"the execution is {status}, not dead")
    out = await _purge(a, [execution_id], dry_run=False)
    if not out.changed:
        raise ApiError(409, "conflict", "the execution changed meanwhile")
    return out


@router.post(
    "/dead-letters/{execution_id}/replay",
    response_model=models.ReplayOut,
    responses={**_not_found, **_conflict},
    tags=["dead letters"],
)
async def replay_dead_letter(a: AdminDep, execution_id: Annotated[UUID, Path()]) -> models.ReplayOut:
    """Replay one dead execution."""
    status = (await a.store().execution_statuses([execution_id])).get(execution_id)
    if status is None:
        raise ApiError(404, "not_found", f"no execution {execution_id}")
    if status != "dead":
        raise ApiError(409, "conflict", f"the execution is {status}, not dead")
    out = await _replay(a, [execution_id], dry_run=False)
    if not out.replayed:
        raise ApiError(409, "conflict", "the execution changed meanwhile")
    return out


# --- overview -----------------------------------------------------------------------------


@router.get("/sources", response_model=list[models.SourceOut], tags=["overview"])
async def list_sources(a: AdminDep) -> list[models.SourceOut]:
    """Every declared source, and any source with stored events, with counts."""
    counts = await a.store().source_counts()
    out: list[models.SourceOut] = []
    for name in sorted(set(a.app.sources) | set(counts)):
        src = a.app.sources.get(name)
        c = counts.get(name)
        out.append(
            models.SourceOut(
                name=name,
                kind=src.kind if src is not None else None,
                declared=src is not None,
                verify=src.verify_signatures if src is not None else None,
                handlers=[h.name for h in a.app.handlers.values() if h.source == name],
                events=c.events if c else {"accepted": 0, "rejected": 0},
                executions=c.executions if c else dict.fromkeys(records.EXECUTION_STATUSES, 0),
                last_received_at=c.last_received_at if c else None,
            )
        )
    return out


@router.get("/stats", response_model=models.StatsOut, tags=["overview"])
async def stats(a: AdminDep, window: Annotated[models.Window, Query()] = "24h") -> models.StatsOut:
    """Deliveries, successes, failures and latency over a time window, in buckets."""
    length, bucket = WINDOWS[window]
    now = store_mod.utcnow().timestamp()
    current = now - now % bucket  # the start of the bucket ``now`` falls in
    until = datetime.fromtimestamp(current + bucket, UTC)
    store = a.store()
    s = await store.stats(until - length, until, bucket)
    queue = await store.counts()
    data = asdict(s)
    return models.StatsOut(window=window, queue=queue, **data)


@router.get("/failures", response_model=list[models.FailureOut], tags=["overview"])
async def failures(a: AdminDep, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[models.FailureOut]:
    """The newest failed attempts (failed, timed out or lost)."""
    return [models.FailureOut(**asdict(f)) for f in await a.store().latest_failures(limit)]


# --- schedules ----------------------------------------------------------------------------

ScheduleName = Annotated[str, Path(max_length=255, description="the schedule's name")]


def _schedule(a: Admin, name: str) -> app_mod.Schedule:
    found = a.app.schedules.get(name)
    if found is None:
        raise ApiError(404, "not_found", f"no schedule named {name!r} in this app")
    return found


def _schedule_out(sched: app_mod.Schedule, info: Any, now: datetime) -> models.ScheduleOut:
    last_result = None
    if info.last_status is not None:
        last_result = info.last_status if info.last_status != "fired" else (info.last_result or "purged")
    return models.ScheduleOut(
        name=sched.name,
        expression=sched.expression,
        timezone=sched.timezone,
        overlap=sched.overlap,
        catchup=sched.catchup,
        paused=info.paused,
        paused_at=info.paused_at,
        next_fire=None if info.paused else sched.cron.next_after(now),
        last_fire_at=info.last_fire_at,
        last_kind=info.last_kind,
        last_result=last_result,
        last_execution_id=info.last_execution_id,
        failures=info.failures,
        queued=info.queued,
    )


@router.get("/schedules", response_model=list[models.ScheduleOut], tags=["schedules"])
async def list_schedules(a: AdminDep) -> list[models.ScheduleOut]:
    """Every ``@app.cron`` schedule: next fire, last fire and its result, failures, pause."""
    names = sorted(a.app.schedules)
    infos = await a.store().schedule_info(names)
    now = store_mod.utcnow()
    return [_schedule_out(a.app.schedules[n], infos[n], now) for n in names]


@router.get(
    "/schedules/{name}",
    response_model=models.ScheduleDetail,
    responses=_not_found,
    tags=["schedules"],
)
async def get_schedule(
    a: AdminDep,
    name: ScheduleName,
    limit: Annotated[int, Query(ge=1, le=models.MAX_PAGE, description="fires shown")] = 50,
) -> models.ScheduleDetail:
    """One schedule with its newest fires (history) and their executions' state."""
    sched = _schedule(a, name)
    store = a.store()
    info = (await store.schedule_info([name]))[name]
    fires = await store.recent_fires(name, limit)
    return models.ScheduleDetail(
        **_schedule_out(sched, info, store_mod.utcnow()).model_dump(),
        fires=[models.FireOut(**asdict(f)) for f in fires],
    )


@router.post(
    "/schedules/{name}/trigger",
    response_model=models.TriggeredOut,
    responses={**_not_found, **_conflict},
    tags=["schedules"],
)
async def trigger_schedule(a: AdminDep, name: ScheduleName) -> models.TriggeredOut:
    """Run a schedule now: one fire at the current time, marked manual (even when paused)."""
    _schedule(a, name)
    try:
        xid = await scheduler_mod.trigger(a.app, a.store(), name, store_mod.utcnow())
    except errors.StoreUnavailable:
        raise
    except errors.StoreError as exc:  # a fire at this very instant exists already
        raise ApiError(409, "conflict", str(exc)) from None
    log.info("schedule.triggered", schedule=name, execution_id=str(xid))
    return models.TriggeredOut(schedule=name, execution_id=xid)


async def _set_paused(a: Admin, name: str, paused: bool) -> models.PausedOut:
    _schedule(a, name)
    changed = await a.store().set_paused(name, paused, store_mod.utcnow())
    if changed:
        log.info("schedule.paused" if paused else "schedule.resumed", schedule=name)
    return models.PausedOut(schedule=name, paused=paused, changed=changed)


@router.post(
    "/schedules/{name}/pause",
    response_model=models.PausedOut,
    responses=_not_found,
    tags=["schedules"],
)
async def pause_schedule(a: AdminDep, name: ScheduleName) -> models.PausedOut:
    """Stop firing a schedule, on every scheduler (kept in the database)."""
    return await _set_paused(a, name, True)


@router.post(
    "/schedules/{name}/resume",
    response_model=models.PausedOut,
    responses=_not_found,
    tags=["schedules"],
)
async def resume_schedule(a: AdminDep, name: ScheduleName) -> models.PausedOut:
    """Fire a paused schedule again from now on (the paused time is not caught up)."""
    return await _set_paused(a, name, False)


# --- the application ----------------------------------------------------------------------


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.error, "message": exc.message}, exc.status)


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own errors (an unparsable body, an unknown path) in this API's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse({"error": code, "message": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, errors.StoreUnavailable):
        return JSONResponse(
            {"error": "unavailable", "message": "the store is unreachable; try again"},
            503,
            headers={"Retry-After": "5"},
        )
    log.error("admin.store_error", error=str(exc))
    return JSONResponse({"error": "store_error", "message": "the store failed; see the logs"}, 500)


def build(application: app_mod.App, store: Callable[[], store_mod.Store]) -> FastAPI:
    """The API as an ASGI app (not yet guarded: ``admin.routes`` wraps it)."""
    api = FastAPI(
        title="solo-os admin API",
        version=_version(),
        description=(
            "Events, executions, dead letters, sources and stats of a solo-os runtime. "
            "Authenticate with `Authorization: Bearer <SOLO_OS_ADMIN_TOKEN>`."
        ),
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not served
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(HTTPBearer(auto_error=False, description="SOLO_OS_ADMIN_TOKEN"))],
    )
    api.state.admin = Admin(application, store)
    api.include_router(router)
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(errors.StoreError, _store_error)
    return api


def _version() -> str:
    from solo_os import __version__

    return __version__
