"""The clock-skew test's app: every handler start and end is written to PostgreSQL
(``SKEW_DSN``) with the database's ``clock_timestamp()``, the one clock every host shares.

- ``retried`` (``invoice.paid``): attempt 1 sleeps 0..``SKEW_SLEEP_MS`` ms, writes its end and
  asks to run again in ``SKEW_RETRY_S`` seconds (``RetryAfter``); attempt 2 writes its start.
- ``tick``: a cron schedule every 2 seconds; each run writes its fire time and its start.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import asyncpg

from solo_os import App, Context, Retry, sources
from solo_os.errors import RetryAfter

app = App(service="skew")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS skew_runs (
    execution_id uuid NOT NULL, attempt int NOT NULL, phase text NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS skew_fires (
    fire_at timestamptz NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
"""

_pool: asyncpg.Pool | None = None
_lock = asyncio.Lock()


async def _db() -> asyncpg.Pool:
    global _pool
    async with _lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["SKEW_DSN"], min_size=1, max_size=4)
    return _pool


async def _run(ctx: Context, phase: str) -> None:
    pool = await _db()
    await pool.execute(
        "INSERT INTO skew_runs (execution_id, attempt, phase, pid) VALUES ($1, $2, $3, $4)",
        ctx.execution_id, ctx.attempt, phase, os.getpid(),
    )


@app.on("billing", "invoice.paid", retry=Retry(max_attempts=5, base_delay=0.01, max_delay=0.5))
async def retried(event: dict[str, Any], ctx: Context) -> None:
    if ctx.attempt == 1:
        await asyncio.sleep(random.uniform(0, int(os.environ.get("SKEW_SLEEP_MS", "3000")) / 1000))
        await _run(ctx, "end")
        raise RetryAfter(float(os.environ.get("SKEW_RETRY_S", "2")))
    await _run(ctx, "start")


@app.cron("*/2 * * * * *", catchup="none")
async def tick(ctx: Context) -> None:
    pool = await _db()
    await pool.execute("INSERT INTO skew_fires (fire_at, pid) VALUES ($1, $2)", ctx.scheduled_at, os.getpid())
