"""``schemas export`` and ``schemas check``: handlers' input contracts, and breaking changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from solo_os import app as app_mod
from solo_os import errors
from solo_os.cli import _common
from solo_os.core import schemas as schemas_mod

schemas = typer.Typer(
    help="Handlers' input schemas: export them as JSON Schema, check for breaking changes.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

AppArg = _common.AppArg
AppOpt = _common.AppOpt


def _current(*targets: str | None) -> tuple[app_mod.App, dict[str, Any]]:
    application = _common.load_app(*targets)
    return application, schemas_mod.export(application.handlers, application.service)


def render(document: dict[str, Any]) -> str:
    """The export as stable text: sorted keys, so a diff in review shows only real changes."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@schemas.command("export")
def schemas_export(
    app_arg: AppArg = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write to this file (default: stdout)")
    ] = None,
    app: AppOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="accepted for symmetry: the export is JSON (errors then too)")
    ] = False,
) -> None:
    """Write the JSON Schema of every handler's input (commit it; check against it in CI)."""
    with _common.friendly_errors():
        application, document = _current(app_arg, app)
        text = render(document)
        if out is None:
            sys.stdout.write(text)
            return
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigError(f"--out: cannot write {str(out)!r}: {exc.strerror}") from None
        _common.err.print(
            f"wrote {len(document['handlers'])} handler schema(s) of {application.service!r} to {out}",
            highlight=False,
        )


@schemas.command("check")
def schemas_check(
    file: Annotated[Path, typer.Argument(help="a saved 'schemas export'")],
    app_arg: AppArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON array for scripts")] = False,
    app: AppOpt = None,
) -> None:
    """Compare the app's schemas with a saved export; exit 1 on a breaking change.

    Breaking: a removed handler or field, a new required field, a narrowed type, a tightened
    constraint or enum, extra fields refused. A breaking change the handler's upcasters cover
    (its version went up) is listed but does not fail.
    """
    with _common.friendly_errors():
        saved = _load_saved(file)
        _, current = _current(app_arg, app)
        changes = schemas_mod.compare(saved, current)
    failing = [c for c in changes if c.fails]
    _report_changes(changes, failing, file, as_json)
    if failing:
        raise typer.Exit(1)


def _load_saved(file: Path) -> dict[str, Any]:
    """The export saved in ``file``."""
    try:
        saved_text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.ConfigError(f"FILE: cannot read {str(file)!r}: {reason}") from None
    try:
        saved_doc = json.loads(saved_text)
    except ValueError as exc:
        raise errors.ConfigError(f"FILE: {str(file)!r} is not JSON: {exc}") from None
    return schemas_mod.load_export(saved_doc, str(file))


def _report_changes(
    changes: list[schemas_mod.Change], failing: list[schemas_mod.Change], file: Path, as_json: bool
) -> None:
    """The changes as a table (or JSON), and the verdict."""
    if as_json:
        _common.emit_json(
            [
                {
                    "handler": c.handler,
                    "path": c.path,
                    "kind": c.kind,
                    "message": c.message,
                    "breaking": c.breaking,
                    "covered_by_upcaster": c.covered,
                }
                for c in changes
            ]
        )
    else:
        rows = [
            {
                "": "BREAKING" if c.fails else ("covered" if c.covered else "ok"),
                "handler": c.handler,
                "field": c.path or "(payload)",
                "change": c.kind,
                "detail": c.message,
            }
            for c in changes
        ]
        if rows:
            _common.table(rows, ("", "handler", "field", "change", "detail"), "schema changes")
        if failing:
            _common.err.print(
                f"[red]{len(failing)} breaking change(s)[/red] against {file}: a payload valid "
                "before may be refused now. Add an upcaster (upcast=) with a version bump, or "
                "re-export if the change is intended.",
                highlight=False,
            )
        else:
            _common.out.print(f"[green]ok[/green]: no breaking change against {file}")
