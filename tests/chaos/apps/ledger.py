"""The chaos tests' app: two durable steps per invoice, every run of a step written to
PostgreSQL (``CHAOS_LEDGER_DSN``), so a test can tell how often each step's effect ran.

``charge_and_mail`` (``invoice.paid``):

1. step ``charge``: the effect, then a fresh random token as the step's result;
2. a random pause of 0..``CHAOS_SLEEP_MS`` ms (where a kill is likely to land);
3. step ``receipt``: the effect, recording the token it was handed by step 1.

Each effect appends to ``chaos_runs`` (every time the step's function body runs: attempt,
pid, token) and inserts into ``chaos_effects`` keyed by (execution, step) with ``ON CONFLICT
DO NOTHING`` (the idempotent form a real effect should take). ``audit`` (``*``) is a second
handler, so every event fans out to two executions.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from typing import Any

import asyncpg

from solo_os import App, Context, Retry, sources

app = App(service="chaos")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS chaos_runs (
    execution_id uuid NOT NULL, step text NOT NULL, attempt int NOT NULL, pid int NOT NULL,
    token text, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS chaos_effects (
    execution_id uuid NOT NULL, step text NOT NULL, PRIMARY KEY (execution_id, step));
"""

_pool: asyncpg.Pool | None = None
_lock = asyncio.Lock()


async def _db() -> asyncpg.Pool:
    global _pool
    async with _lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["CHAOS_LEDGER_DSN"], min_size=1, max_size=8)
    return _pool


async def effect(ctx: Context, step: str, token: str | None) -> str:
    pool = await _db()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO chaos_runs (execution_id, step, attempt, pid, token) VALUES ($1, $2, $3, $4, $5)",
            ctx.execution_id, step, ctx.attempt, os.getpid(), token,
        )
        await conn.execute(
            "INSERT INTO chaos_effects (execution_id, step) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            ctx.execution_id, step,
        )
    return uuid.uuid4().hex


@app.on("billing", "invoice.paid", retry=Retry(max_attempts=100, base_delay=0.01, max_delay=0.5))
async def charge_and_mail(event: dict[str, Any], ctx: Context) -> None:
    token = await ctx.step("charge", effect, ctx, "charge", None)
    await asyncio.sleep(random.uniform(0, int(os.environ.get("CHAOS_SLEEP_MS", "50")) / 1000))
    await ctx.step("receipt", effect, ctx, "receipt", token)


@app.on("billing", "*", retry=Retry(max_attempts=100, base_delay=0.01, max_delay=0.5))
async def audit(event: dict[str, Any], ctx: Context) -> None:
    """A second handler on every event: fan-out under the same kills."""
