"""The hosts test's app: every handler run appends ``<execution id> <attempt> <pid>`` to this
host's ``COUNT_FILE`` (one short ``O_APPEND`` write, outside the database), so the test can tell
how often, and on which host, each execution's handler ran, even while a host is cut off.

- ``counted`` (``invoice.paid``): sleeps 0..``COUNT_SLEEP_MS`` ms, then counts its run.
- ``tick``: a cron schedule every 2 seconds; each run appends its fire time to ``TICK_FILE``.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from solo_os import App, Context, Retry, sources

app = App(service="hosts")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.on("billing", "invoice.paid", retry=Retry(max_attempts=100, base_delay=0.01, max_delay=0.5))
async def counted(event: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(random.uniform(0, int(os.environ.get("COUNT_SLEEP_MS", "20")) / 1000))
    _append(os.environ["COUNT_FILE"], f"{ctx.execution_id} {ctx.attempt} {os.getpid()}\n")


@app.cron("*/2 * * * * *", catchup="none")
async def tick(ctx: Context) -> None:
    assert ctx.scheduled_at is not None
    _append(os.environ["TICK_FILE"], f"{ctx.scheduled_at.isoformat()} {os.getpid()}\n")
