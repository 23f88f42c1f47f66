"""An app for multi-process workflow tests; effects go to a SQLite ledger (``LEDGER_DB``).

- ``trial`` (``trial.started``): step ``before`` (ledger row), ``ctx.sleep`` ``NAP_SECONDS``,
  then an ``after`` row (plain code: a second resumption would write a second one).
- ``ping`` (``ping``): one ``ping`` row (runs while ``trial`` sleeps, on one worker slot).
- ``checkout`` (``checkout``): waits for ``payment`` with the same ``order``, then a ``resumed``
  row carrying the payment's ``n``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from solo_os import App, Context, sources

app = App(service="workflow-test")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


def write(kind: str, ctx: Context, detail: str = "") -> str:
    conn = sqlite3.connect(os.environ["LEDGER_DB"], timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger (kind TEXT, execution_id TEXT, detail TEXT, pid INTEGER)"
        )
        conn.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?)", (kind, str(ctx.execution_id), detail, os.getpid())
        )
    finally:
        conn.close()
    return kind


@app.on("billing", "trial.started")
async def trial(event: dict[str, Any], ctx: Context) -> str:
    await ctx.step("before", write, "before", ctx)
    await ctx.sleep("nap", float(os.environ.get("NAP_SECONDS", "3")))
    write("after", ctx)
    return "done"


@app.on("billing", "ping")
def ping(event: dict[str, Any], ctx: Context) -> None:
    write("ping", ctx)


@app.on("billing", "checkout")
async def checkout(event: dict[str, Any], ctx: Context) -> Any:
    paid = await ctx.wait_for_event(
        "payment", "billing", "payment", match={"order": event["order"]}, timeout=120
    )
    write("resumed", ctx, str(paid["n"] if paid else None))
    return paid
