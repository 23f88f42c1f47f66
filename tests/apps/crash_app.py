"""An app whose handlers try to take the worker process down (issue 14's process-level tests).

Event types name the handler: ``healthy``, ``poison`` (``os._exit(1)``), ``exit_def``
(``SystemExit`` from a plain ``def``), ``interrupt`` (``KeyboardInterrupt`` from async code),
``spin`` and ``hang`` (plain ``def`` handlers that never return, with a long timeout so that
they are still running when the process is told to stop).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from solo_os import App, Context, Retry, sources

app = App(service="crash-test")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
TWICE = Retry(max_attempts=2, base_delay=0.0)


@app.on("billing", "healthy", retry=TWICE)
async def healthy(event: Any, ctx: Context) -> None:
    # Still running on the first attempt when the poison strikes; quick when run again.
    await asyncio.sleep(3.0 if ctx.attempt == 1 else 0.01)


@app.on("billing", "poison", retry=TWICE)
async def poison(event: Any, ctx: Context) -> None:
    await asyncio.sleep(0.05)  # let its neighbours start first
    os._exit(1)


@app.on("billing", "exit_def", retry=TWICE)
def exit_def(event: Any, ctx: Context) -> None:
    raise SystemExit(3)


@app.on("billing", "interrupt", retry=TWICE)
async def interrupt(event: Any, ctx: Context) -> None:
    raise KeyboardInterrupt


@app.on("billing", "spin", retry=TWICE, timeout=300)
def spin(event: Any, ctx: Context) -> None:
    while True:
        pass


@app.on("billing", "hang", retry=TWICE, timeout=300)
def hang(event: Any, ctx: Context) -> None:
    time.sleep(3600)
