"""The ``solo-os`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from solo_os.cli import _common, dlq, init, records, revalidate, schemas, send, serve
from solo_os.cli import db_ops as _db_ops  # noqa: F401 - registers 'db prune', 'db stats'
from solo_os.cli import record_replay as _record_replay  # noqa: F401 - 'events export', 'events replay'
from solo_os.cli import schedules as schedules_cli

cli = typer.Typer(
    name="solo-os",
    help="Verified, deduplicated webhooks and idempotent handlers, on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.command()(serve.run)
cli.command()(serve.serve)
cli.command()(serve.worker)
cli.command()(schedules_cli.scheduler)
cli.command("send")(send.send)
_ = revalidate  # registers `events revalidate` on records.events
cli.add_typer(records.db, name="db")
cli.add_typer(records.events, name="events")
cli.add_typer(records.executions, name="executions")
cli.add_typer(dlq.dlq, name="dlq")
cli.add_typer(schedules_cli.schedules, name="schedules")
cli.add_typer(schemas.schemas, name="schemas")
cli.command()(init.init)

config_cli = typer.Typer(help="Configuration.", no_args_is_help=True)
cli.add_typer(config_cli, name="config")


@config_cli.command("check")
def config_check(
    app: Annotated[str | None, typer.Argument(envvar="SOLO_OS_APP", help=_common.APP_HELP)] = None,
) -> None:
    """Validate the settings and, given an app, its sources' secrets and handlers."""
    with _common.friendly_errors():
        warnings: list[str] = []
        application = _common.load_app(app) if app else None
        if application is not None:
            warnings = application.prepare()  # settings, secrets and handlers, all problems at once
            settings = application.settings
        else:
            settings = _common.settings()
        _common.out.print(f"[green]ok[/green]: database {settings.dialect}, log level {settings.log_level}")
        if application is not None:
            handlers = sum(1 for h in application.handlers.values() if h.kind == "event")
            _common.out.print(
                f"[green]ok[/green]: {len(application.sources)} source(s), "
                f"{handlers} handler(s), {len(application.schedules)} schedule(s)"
            )
        for w in warnings:
            _common.out.print(f"[yellow]warning[/yellow]: {w}")


def main() -> None:
    cli()
