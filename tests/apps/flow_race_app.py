"""An app for the HTTP race tests (tests/integration/test_flow_races.py): rate limit, singleton
and debounce handlers that log each run to ``FLOW_LOG`` (one ``O_APPEND`` write per line)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from flow_log import record  # this folder is on sys.path when the app loads

from solo_os import App, Context, Debounce, RateLimit, Singleton, sources

app = App(service="flow-race")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
RATE = 5  # runs per key per hour


@app.on("billing", "race.rate", rate_limit=RateLimit(RATE, 3600, key="k"))
async def rate(event: dict[str, Any], ctx: Context) -> None:
    record("rate", "start", k=event["k"], i=event["i"])


@app.on("billing", "race.single", singleton=Singleton(key="k"))
async def single(event: dict[str, Any], ctx: Context) -> None:
    record("single", "start", k=event["k"], i=event["i"])
    gate = Path(os.environ["FLOW_GATE"])
    while not await asyncio.to_thread(gate.exists):  # held running until the test opens the gate
        await asyncio.sleep(0.05)
    record("single", "end", k=event["k"], i=event["i"])


@app.on("billing", "race.debounce", debounce=Debounce(1.0, key="k"))
async def debounced(event: dict[str, Any], ctx: Context) -> None:
    record("debounced", "start", k=event["k"], i=event["i"], execution=str(ctx.execution_id))
