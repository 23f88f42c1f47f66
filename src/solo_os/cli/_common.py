"""What every CLI command shares: loading config and the app, output as tables or JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import orjson
import typer
from rich.console import Console
from rich.table import Table

from solo_os import _loader, config, errors, tracing
from solo_os import app as app_mod
from solo_os import logging as slog
from solo_os import store as store_mod

T = TypeVar("T")
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

APP_HELP = "path/to/app.py or module:attribute (or set SOLO_OS_APP)"


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known failures as one readable line each (no traceback), with a non-zero exit."""
    try:
        yield
    except errors.ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]config error:[/red] {problem}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    except errors.StoreError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)  # it says "store error: ..." itself
        raise typer.Exit(1) from None


def settings() -> config.Settings:
    return config.load()


def load_app(target: str | None) -> app_mod.App:
    if not target:
        raise errors.ConfigError("APP: give path/to/app.py or module:attribute, or set SOLO_OS_APP")
    return _loader.load_app(target)


def setup_logging(s: config.Settings, service: str = "solo-os") -> None:
    slog.configure(s.log_level, s.log_format, service, cache=True)
    tracing.configure(service)


def run_async(main: Awaitable[T]) -> T:
    """Run the server or worker loop: on uvloop where it is installed, with the start-up heap
    frozen so the garbage collector's full passes stop rescanning it (they caused 50-70 ms
    pauses under load, see docs/benchmarks.md)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is part of uvicorn[standard] on Unix
        pass
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    runner = asyncio.Runner(loop_factory=factory)
    try:
        return runner.run(main)  # type: ignore[arg-type]
    finally:
        if abandoned_threads:
            # Plain ``def`` handlers still running in threads after a clean shutdown: their
            # leases are released (the executions are pending again). Closing the loop would
            # join those threads, keeping a stopped process alive as long as the slowest one.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        runner.close()


#: Set by the worker role when shutdown left plain-``def`` handler threads running.
abandoned_threads = False


def with_store(fn: Callable[[store_mod.Store], Awaitable[T]]) -> T:
    """Run ``fn`` against the configured store, closing it afterwards."""

    async def main() -> T:
        store = store_mod.connect(settings().database_url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def parse_since(value: str | None) -> datetime | None:
    """``10m``, ``2h``, ``3d``, ``1w`` ago, or an ISO 8601 time (UTC if it names no zone)."""
    if not value:
        return None
    m = _RELATIVE.match(value.strip())
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise errors.ConfigError(f"--since: {value!r} is neither like 30m/2h/7d nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_id(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise errors.ConfigError(f"{what}: {value!r} is not an id") from None


def as_dict(record: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(cell(row.get(c)) for c in columns))
    out.print(t)
    if not rows:
        out.print("(none)")
