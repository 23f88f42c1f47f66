"""The ``solo-os`` command.

Each command's module is imported only when that command runs: ``solo-os --help`` and
``--version`` import Typer and nothing of the runtime (no pydantic, SQLAlchemy, uvicorn or
httpx), see ``bench/cli_startup.py``. ``COMMANDS`` names every command with the module that
defines it and its one-line help (a test checks the line against the real command's). Help is
plain text (``rich_markup_mode=None``): Rich's help formatter alone costs about as much again as
the rest of ``--help``; the commands' tables and progress bars still use Rich.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import solo_os
from solo_os.cli import _mode


@dataclass(frozen=True)
class Lazy:
    """A command defined in ``solo_os.cli.<module>`` as ``attribute``: a function, or a
    ``typer.Typer`` group; ``also`` are modules that add commands to that group when imported."""

    module: str
    attribute: str
    help: str
    also: tuple[str, ...] = ()

    def load(self) -> Any:
        for extra in self.also:
            importlib.import_module(f"solo_os.cli.{extra}")
        found = getattr(importlib.import_module(f"solo_os.cli.{self.module}"), self.attribute)
        if isinstance(found, typer.Typer):
            return typer.main.get_command(found)
        single = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
        single.command()(found)
        return typer.main.get_command(single)


COMMANDS: dict[str, Lazy] = {
    # name: Lazy(module in solo_os.cli, attribute, the one-line help shown by --help)
    "run": Lazy(
        "serve", "run",
        "Ingress, worker, scheduler (and consumer) in one process; brings the schema up to date first.",
    ),
    "serve": Lazy("serve", "serve", "Only the HTTP ingress (scale-out: run workers separately)."),
    "worker": Lazy(
        "serve", "worker", "Only the worker: claims and runs executions until SIGTERM/SIGINT."
    ),
    "consume": Lazy(
        "consume", "consume",
        "Only the consumer: reads the app's queue-fed sources (SQS, Redis, RabbitMQ, NATS) into the store.",
    ),
    "scheduler": Lazy(
        "schedules", "scheduler",
        "Only the scheduler: fires the app's schedules (exactly once across replicas).",
    ),
    "send": Lazy(
        "send", "send",
        "Send a correctly signed test delivery to a running solo-os (exit 1 unless all are 2xx).",
    ),
    "db": Lazy("records", "db", "The database: schema, retention and size.", also=("db_ops",)),
    "events": Lazy(
        "records", "events", "Stored webhook deliveries.", also=("record_replay", "revalidate")
    ),
    "executions": Lazy("records", "executions", "Handler executions and their attempts."),
    "dlq": Lazy("dlq", "dlq", "Dead executions: inspect, replay with a fresh budget, purge."),
    "schedules": Lazy("schedules", "schedules", "Cron schedules: list, run now, backfill, pause."),
    "schemas": Lazy(
        "schemas", "schemas",
        "Handlers' input schemas: export them as JSON Schema, check for breaking changes.",
    ),
    "init": Lazy(
        "init", "init",
        "Scaffold a project: app.py, tests, .env.example, Dockerfile, compose, terraform/.",
    ),
    "config": Lazy("config_cmd", "config", "Configuration: check the settings and the app."),
    "sources": Lazy(
        "sources", "sources",
        "The app's sources: route, kind and the variables each reads (set or not, never values).",
    ),
}


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut at a word with "..."."""
    if len(text) <= limit:
        return text
    return text[: limit - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


class _Commands(MutableMapping[str, Any]):
    """The group's commands: every name is listed, a command is built when first looked up."""

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self.loaded = dict(eager)

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            self.loaded[name] = COMMANDS[name].load()  # KeyError: no such command
        return self.loaded[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.loaded[name] = value

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **dict.fromkeys(self.loaded)})

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self.loaded))


class LazyGroup(TyperGroup):
    """A Typer group whose commands are imported on use, whose help lists them without importing
    them, and whose usage errors are JSON objects when ``--json`` is on the command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names, without building the commands

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        loaded = self.commands.loaded if isinstance(self.commands, _Commands) else {}
        names = self.list_commands(ctx)
        limit = max(30, formatter.width - 6 - max(map(len, names)))
        rows = []
        for name in names:
            text = loaded[name].get_short_help_str(10**6) if name in loaded else COMMANDS[name].help
            rows.append((name, shorten(text, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        _mode.json_output = _mode.wants_json(argv)
        expand = windows_expand_args
        try:
            if not _mode.json_output or not standalone_mode:
                return super().main(argv, prog_name, complete_var, standalone_mode, expand, **extra)
            try:
                code = super().main(argv, prog_name, complete_var, False, expand, **extra)
            except Exception as exc:
                if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                    raise
                # a usage error (click's ClickException): JSON like every other error under --json
                _mode.emit_error("usage_error", exc.format_message(), exc.exit_code)
                sys.exit(exc.exit_code)
            sys.exit(code if isinstance(code, int) else 0)
        finally:
            _mode.json_output = False  # for whoever calls a command's function directly next


cli = typer.Typer(
    name="solo-os",
    cls=LazyGroup,
    help="Verified, deduplicated webhooks and idempotent handlers, on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"solo-os {solo_os.__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_version, help="print the version and exit"),
    ] = False,
) -> None:
    """Verified, deduplicated webhooks and idempotent handlers, on SQLite or PostgreSQL."""


def main() -> None:
    cli()
