"""A no-op app for the drain and history benchmarks: one async handler that does nothing.

Its ``billing`` source is the same signed ``sources.hmac`` as the example's, so the ingest
benchmark can use it too (``BILLING_WEBHOOK_SECRET``).
"""

from __future__ import annotations

from typing import Any

from solo_os import App, Context, sources

app = App(service="bench-noop")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))  # noqa: S106 - a name


@app.on("billing", "bench.noop")
async def noop(event: dict[str, Any], ctx: Context) -> None:
    """Nothing: what is measured is the runtime around the handler."""
