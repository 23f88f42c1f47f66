"""``config check``: validate the settings and, given an app, its sources' secrets and handlers."""

from __future__ import annotations

from typing import Any

import typer

from solo_os import errors
from solo_os.cli import _common

config = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@config.callback()
def _config() -> None:
    """Configuration: check the settings and the app."""


@config.command("check")
def config_check(
    app_arg: _common.AppArg = None,
    app: _common.AppOpt = None,
    as_json: _common.Json = False,
) -> None:
    """Validate the settings and, given an app (or ./app.py), its secrets and handlers."""
    with _common.friendly_errors():
        warnings: list[str] = []
        target = app_arg or app
        try:
            target = _common.app_target(target)
        except errors.ConfigError:
            target = None  # no app: the settings alone
        application = _common.load_app(target) if target else None
        if application is not None:
            warnings = application.prepare()  # settings, secrets and handlers, all problems at once
            settings = application.settings
        else:
            settings = _common.settings()
        data: dict[str, Any] = {
            "ok": True,
            "database": settings.dialect,
            "database_location": _common.database_location(settings.database_url),
            "log_level": settings.log_level,
            "app": target,
            "warnings": warnings,
        }
        if application is not None:
            data.update(
                service=application.service,
                sources=len(application.sources),
                handlers=sum(1 for h in application.handlers.values() if h.kind == "event"),
                schedules=len(application.schedules),
            )
    if as_json:
        _common.emit_json(data)
        return
    _common.out.print(f"[green]ok[/green]: database {settings.dialect}, log level {settings.log_level}")
    if application is not None:
        _common.out.print(
            f"[green]ok[/green]: {data['sources']} source(s), "
            f"{data['handlers']} handler(s), {data['schedules']} schedule(s)"
        )
    for w in warnings:
        _common.warn(w)
