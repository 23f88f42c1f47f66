"""``/api/sources``, ``/api/stats``, ``/api/failures``: the overview page."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query

from solo_os import store as store_mod
from solo_os.admin import models
from solo_os.admin._shared import AdminDep, new_router
from solo_os.core import records

router = new_router()

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


