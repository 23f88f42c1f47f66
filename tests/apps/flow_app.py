"""An app with flow-controlled handlers for the process tests (tests/integration/test_flow_*).

Each handler appends ``{"h": name, "at": "start"|"end", "t": time, "pid": ..., ...}`` lines
to the file named by ``FLOW_LOG`` (one ``O_APPEND`` write per line: lines of several worker
processes never interleave), so a test can measure overlap, order and rates.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from flow_log import record  # this folder is on sys.path when the app loads

from solo_os import App, Batch, Concurrency, Context, Debounce, Retry, Throttle, sources

app = App(service="flow-test")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
ONCE = Retry(max_attempts=3, base_delay=0.0)
WORK = float(os.environ.get("FLOW_WORK_SECONDS", "0.05"))


@app.on("billing", "conc.key", retry=ONCE, concurrency=Concurrency(1, key="customer"))
async def per_customer(event: dict[str, Any], ctx: Context) -> None:
    record("per_customer", "start", key=event["customer"], i=event["i"])
    await asyncio.sleep(WORK)
    record("per_customer", "end", key=event["customer"], i=event["i"])


@app.on("billing", "conc.global", retry=ONCE, concurrency=Concurrency(2))
async def two_at_a_time(event: dict[str, Any], ctx: Context) -> None:
    record("two_at_a_time", "start", i=event["i"])
    await asyncio.sleep(WORK)
    record("two_at_a_time", "end", i=event["i"])


@app.on("billing", "throttle", retry=ONCE, throttle=Throttle(4, 1.0))
async def throttled(event: dict[str, Any], ctx: Context) -> None:
    record("throttled", "start", i=event["i"])


@app.on("billing", "batch", retry=ONCE, batch=Batch(max_size=7, timeout=1.0))
async def batched(events: list[dict[str, Any]], ctx: Context) -> None:
    record(
        "batched", "start", batch=str(ctx.execution_id), items=[e["i"] for e in events], attempt=ctx.attempt
    )
    if os.environ.get("FLOW_BATCH_HANG") and ctx.attempt == 1:
        await asyncio.sleep(3600)  # killed (-9) here by the test
    record("batched", "end", batch=str(ctx.execution_id))


@app.on("billing", "debounce", retry=ONCE, debounce=Debounce(2.0, key="k", timeout=8.0))
async def debounced(event: dict[str, Any], ctx: Context) -> None:
    record("debounced", "start", i=event["i"], k=event["k"])


@app.on("billing", "lost", retry=ONCE, concurrency=Concurrency(2))
async def two_with_a_poison(event: dict[str, Any], ctx: Context) -> None:
    record("two_with_a_poison", "start", i=event["i"], attempt=ctx.attempt, x=str(ctx.execution_id))
    if event.get("poison"):
        os.kill(os.getpid(), signal.SIGKILL)  # every attempt takes its process down
    await asyncio.sleep(WORK)
    record("two_with_a_poison", "end", i=event["i"], x=str(ctx.execution_id))
