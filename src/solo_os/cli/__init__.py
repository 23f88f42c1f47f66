"""The ``solo-os`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from solo_os import runtime as runtime_mod
from solo_os.cli import _common, dlq, records, schemas, serve

cli = typer.Typer(
    name="solo-os",
    help="Verified, deduplicated webhooks and idempotent handlers, on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.command()(serve.run)
cli.command()(serve.serve)
cli.command()(serve.worker)
cli.add_typer(records.db, name="db")
cli.add_typer(records.events, name="events")
cli.add_typer(records.executions, name="executions")
cli.add_typer(dlq.dlq, name="dlq")
cli.add_typer(schemas.schemas, name="schemas")

config_cli = typer.Typer(help="Configuration.", no_args_is_help=True)
cli.add_typer(config_cli, name="config")


@config_cli.command("check")
def config_check(
    app: Annotated[str | None, typer.Argument(envvar="SOLO_OS_APP", help=_common.APP_HELP)] = None,
) -> None:
    """Validate the settings and, given an app, its sources' secrets and handlers."""
    with _common.friendly_errors():
        settings = _common.settings()
        warnings: list[str] = []
        if app:
            application = _common.load_app(app)
            rt = runtime_mod.Runtime(application)
            warnings = application.prepare()
            _ = rt
        _common.out.print(f"[green]ok[/green]: database {settings.dialect}, log level {settings.log_level}")
        if app:
            _common.out.print(
                f"[green]ok[/green]: {len(application.sources)} source(s), "
                f"{len(application.handlers)} handler(s)"
            )
        for w in warnings:
            _common.out.print(f"[yellow]warning[/yellow]: {w}")


def main() -> None:
    cli()
