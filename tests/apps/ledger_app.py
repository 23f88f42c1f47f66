"""An app for multi-process tests: every effect is appended to a SQLite ledger shared by
all worker processes (``LEDGER_DB``), so a test can count effects per execution and attempt.

- ``fulfil`` (``invoice.paid``): a durable step ``effect`` that writes a ledger row, then
  sleeps a random 0..``SLEEP_MS`` milliseconds (the rest of the attempt, where a kill lands).
- ``audit`` (``*``): a plain function that writes one ledger row.
- ``flaky`` (``job``): fails with RuntimeError while the file ``HEALTHY_FLAG`` is absent.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

from solo_os import App, Context, Retry, sources

app = App(service="ledger-test")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


def _write(kind: str, ctx: Context) -> int:
    conn = sqlite3.connect(os.environ["LEDGER_DB"], timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger (kind TEXT, execution_id TEXT, attempt INTEGER, pid INTEGER)"
        )
        conn.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?)",
            (kind, str(ctx.execution_id), ctx.attempt, os.getpid()),
        )
    finally:
        conn.close()
    return ctx.attempt


@app.on("billing", "invoice.paid", retry=Retry(max_attempts=10, base_delay=0.05))
async def fulfil(event: dict[str, Any], ctx: Context) -> None:
    await ctx.step("effect", _write, "effect", ctx)
    await asyncio.sleep(random.uniform(0, int(os.environ.get("SLEEP_MS", "100")) / 1000))
    await asyncio.to_thread(_write, "done", ctx)


@app.on("billing", "*")
def audit(event: dict[str, Any], ctx: Context) -> None:
    _write("audit", ctx)


@app.on("billing", "job", retry=Retry(max_attempts=1))
def flaky(event: dict[str, Any], ctx: Context) -> None:
    if not Path(os.environ.get("HEALTHY_FLAG", "/nonexistent")).exists():
        raise RuntimeError("downstream unavailable")
    _write("flaky", ctx)
