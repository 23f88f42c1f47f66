"""pgqueuer with one no-op entrypoint; ``pgq run bench.baselines.pgqueuer_app:main``."""

from __future__ import annotations

import os

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer


async def main() -> PgQueuer:
    conn = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """Nothing."""

    return pgq


if __name__ == "__main__":
    # ``pgq run`` of pgqueuer 1.6.0 fails at start with the installed typer ("'str' object has no
    # attribute 'name'" in setup_fancy_logger), so the worker is started the way ``pgq run``
    # does it: build the PgQueuer, then ``run(batch_size=...)``.
    import argparse
    import asyncio

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()

    async def _run() -> None:
        pgq = await main()
        await pgq.run(batch_size=args.batch_size)

    asyncio.run(_run())
