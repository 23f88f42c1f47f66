"""An app whose handler counts its own runs outside the database: each run appends
``<execution id> <attempt> <pid>`` to the file ``COUNT_FILE`` (one short ``O_APPEND`` write,
atomic between processes), so a test can tell how often each execution's handler ran even
while the database is down.

``invoice.paid`` sleeps 0..``COUNT_SLEEP_MS`` ms first (where an outage is likely to land),
then, while the file ``COUNT_GATE`` names exists, waits for it to go: a test holds handlers
there to have them finish at a moment it picks (inside an outage).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from solo_os import App, Context, Retry, sources

app = App(service="counted")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


def _gated() -> bool:
    gate = os.environ.get("COUNT_GATE")
    return bool(gate) and os.path.exists(gate)  # type: ignore[arg-type]


def _count(ctx: Context) -> None:
    line = f"{ctx.execution_id} {ctx.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ["COUNT_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.on("billing", "invoice.paid", retry=Retry(max_attempts=100, base_delay=0.01, max_delay=0.5))
async def counted(event: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(random.uniform(0, int(os.environ.get("COUNT_SLEEP_MS", "500")) / 1000))
    while _gated():
        await asyncio.sleep(0.01)
    _count(ctx)
