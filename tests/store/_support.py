"""Builders of store inputs (deliveries, attempt outcomes) for the contract suite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from solo_os.core import records


def event(
    now: datetime,
    *,
    key: str | None = None,
    source: str = "shop",
    handlers: Sequence[str] = ("fulfil",),
    status: records.EventStatus = "accepted",
    payload: Any = None,
    max_attempts: int = 3,
) -> records.NewEvent:
    document = {"n": 1} if payload is None else payload
    text = json.dumps(document)
    return records.NewEvent(
        id=uuid.uuid4(),
        source=source,
        idempotency_key=key or uuid.uuid4().hex,
        type="order.paid",
        status=status,
        payload=text,
        body=text.encode(),
        headers={"content-type": "application/json"},
        errors=[{"loc": ["n"], "msg": "bad"}] if status == "rejected" else None,
        correlation_id=uuid.uuid4().hex,
        received_at=now,
        executions=()
        if status == "rejected"
        else tuple(records.NewExecution(uuid.uuid4(), h, max_attempts) for h in handlers),
    )


def finished(
    claimed: records.Claimed,
    now: datetime,
    next_status: records.ExecutionStatus,
    *,
    run_after: datetime | None = None,
) -> records.Finished:
    ok = next_status == "succeeded"
    return records.Finished(
        execution_id=claimed.id,
        attempt=claimed.attempt,
        started_at=now,
        ended_at=now,
        outcome="succeeded" if ok else "failed",
        next_status=next_status,
        run_after=run_after,
        error_type=None if ok else "ValueError",
        error_message=None if ok else "boom",
    )
