"""The end-to-end benchmark's app: each handler start records how long ago its delivery arrived.

``ctx.event.received_at`` is stamped by the ingress when the request body has been read; the
handler compares it with ``time.time()`` on its first attempt. Serve and worker run on the same
host, so both read the same clock. One line per start is appended to
``$BENCH_LATENCY_FILE.<pid>`` (seconds, the event id, then the start's wall-clock time).
"""

from __future__ import annotations

import os
import time
from typing import Any

from solo_os import App, Context, sources

app = App(service="bench-latency")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))  # noqa: S106 - a name

_out = None


def _file() -> Any:
    global _out
    if _out is None:
        _out = open(f"{os.environ['BENCH_LATENCY_FILE']}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    return _out


@app.on("billing", "*")
async def record(event: dict[str, Any], ctx: Context) -> None:
    now = time.time()
    assert ctx.event is not None
    if ctx.attempt == 1:
        _file().write(f"{now - ctx.event.received_at.timestamp():.6f} {ctx.event.id} {now:.3f}\n")
