"""The no-op app of bench/drain.py with flow control: ``noop`` runs at most one execution per
concurrency key (``Concurrency(1, key="id")``). bench/flow_drain.py seeds the keys by SQL."""

from __future__ import annotations

from typing import Any

from solo_os import App, Concurrency, Context, sources

app = App(service="bench-flow-noop")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))  # noqa: S106 - a name


@app.on("billing", "bench.noop", concurrency=Concurrency(1, key="id"))
async def noop(event: dict[str, Any], ctx: Context) -> None:
    """Nothing: what is measured is the runtime around the handler."""
