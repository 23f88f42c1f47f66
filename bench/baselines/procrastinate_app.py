"""procrastinate with one no-op task (``PROCRASTINATE_DSN``)."""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("PROCRASTINATE_DSN", ""))
)


@app.task(name="noop")
async def noop() -> None:
    """Nothing."""
