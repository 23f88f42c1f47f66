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
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solo_os import _loader, config, errors
from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.cli import _mode
from solo_os.observability import logs as slog
from solo_os.observability import tracing

T = TypeVar("T")
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

APP_HELP = "the app: path/to/app.py or module:attribute (default: $SOLO_OS_APP, else ./app.py)"
#: Every command that needs the app takes ``--app``; those without other arguments also take it
#: as their last positional argument. ``SOLO_OS_APP`` reaches the option only, so a positional
#: APP wins over the environment.
AppOpt = Annotated[
    str | None, typer.Option("--app", "-a", envvar="SOLO_OS_APP", show_envvar=False, help=APP_HELP)
]
AppArg = Annotated[str | None, typer.Argument(metavar="APP", show_default=False, help=APP_HELP)]
Json = Annotated[bool, typer.Option("--json", help="JSON for scripts (errors too)")]

# exit codes (docs/reference/cli.md)
EXIT_FAILED = 1  # a store error, something not found, a send or check that failed
EXIT_CONFIG = 2  # a configuration or usage problem
EXIT_PORT = 3  # the port to listen on is taken
EXIT_UNREACHABLE = 4  # run/serve/worker/scheduler: no database within SOLO_OS_DB_CONNECT_TIMEOUT

_warned = False


class NotFound(errors.SoloOSError):
    """What the command was asked about does not exist (exit 1)."""


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known failures as one readable line each (no traceback), with a non-zero exit; under
    ``--json`` as one JSON object on stdout instead."""
    _warn_environment()
    try:
        yield
    except errors.ConfigError as exc:
        fail("config_error", list(exc.problems), EXIT_CONFIG, "config error")
    except errors.StoreUnreachable as exc:
        fail("store_unreachable", [str(exc)], EXIT_UNREACHABLE)
    except errors.StoreError as exc:
        message = str(exc)  # it says "store error: ..." itself
        if isinstance(exc, errors.StoreUnavailable):
            message += f" ({database_location()})"
        fail("store_error", [message], EXIT_FAILED)
    except NotFound as exc:
        fail("not_found", [str(exc)], EXIT_FAILED)


def fail(kind: str, problems: list[str], code: int, label: str = "") -> None:
    """Report ``problems`` (text on stderr, or JSON on stdout) and exit with ``code``."""
    if _mode.json_output:
        _mode.emit_error(kind, problems[0] if problems else kind, code, problems)
    else:
        for problem in problems:
            prefix = f"[red]{label}:[/red] " if label else ""
            err.print(prefix + escape(problem), style=None if label else "red", highlight=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def _warn_environment() -> None:
    """Once per run: variables that look like misspelt settings (they would be ignored)."""
    global _warned
    if _warned:
        return
    _warned = True
    for message in config.misspelt(config.environ().keys()):
        warn(message)


def database_location(url: str | None = None) -> str:
    """Where the database is, without credentials: ``PostgreSQL at host:port/db`` or the file."""
    try:
        url = url or config.load().database_url
    except errors.ConfigError:
        return "DATABASE_URL is not valid"
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite at {path}"
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"PostgreSQL at {parts.hostname or 'localhost'}:{port}, database {parts.path.lstrip('/') or '?'}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for PostgreSQL or an in-memory database)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
        return None
    path = unquote(rest.split("?", 1)[0])
    if path.startswith("/"):
        path = path[1:]  # sqlite:///relative.db, sqlite:////absolute.db
    if path in ("", ":memory:"):
        return None
    return Path(path).resolve()


def settings() -> config.Settings:
    return config.load()


def app_target(*given: str | None) -> str:
    """The app named on the command line (first given wins) or in SOLO_OS_APP, else ./app.py."""
    for target in given:
        if target:
            return target
    if Path("app.py").is_file():
        return "app.py"
    raise errors.ConfigError(
        "APP: which app? Give path/to/app.py or module:attribute (as APP or --app), "
        "set SOLO_OS_APP, or run where app.py is"
    )


def load_app(*given: str | None) -> app_mod.App:
    return _loader.load_app(app_target(*given))


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


def check_database(url: str, *, create: bool) -> None:
    """A SQLite database's folder must exist, and the file too unless ``create``."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.parent.is_dir():
        raise errors.ConfigError(
            f"DATABASE_URL: the folder {path.parent} does not exist (for the SQLite database "
            f"{path.name}); create it, or point DATABASE_URL elsewhere"
        )
    if not create and not path.exists():
        raise errors.ConfigError(
            f"DATABASE_URL: no database at {path}: run this where your app runs (its .env), "
            "set DATABASE_URL, or run 'solo-os db upgrade' first to create it"
        )


def with_store(fn: Callable[[store_mod.Store], Awaitable[T]], *, create: bool = False) -> T:
    """Run ``fn`` against the configured store, closing it afterwards.

    A SQLite database must be in an existing folder, and only ``create`` (``db upgrade``) makes
    a new one: in the wrong folder, ``events list`` says so instead of creating an empty one."""
    url = settings().database_url
    check_database(url, create=create)

    async def main() -> T:
        store = store_mod.connect(url)
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
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")  # UTC, and it says so
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
