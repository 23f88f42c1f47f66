"""``dlq``: the dead-letter queue — list, show, replay and purge dead executions."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from solo_os import app as app_mod
from solo_os import config, errors
from solo_os import store as store_mod
from solo_os.cli import _common
from solo_os.cli import records as records_cli
from solo_os.ops import budgets as ops_budgets
from solo_os.ops import purge, replay, select

dlq = typer.Typer(
    help="Dead executions: inspect, replay with a fresh budget, purge.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

Ids = Annotated[list[str] | None, typer.Argument(help="execution ids (or use --all with filters)")]
All = Annotated[bool, typer.Option("--all", help="every dead execution matching the filters")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would happen, change nothing")]
Source = Annotated[str | None, typer.Option(help="only this source")]
Type = Annotated[str | None, typer.Option("--type", help="only this event type")]
Handler = Annotated[str | None, typer.Option(help="only this handler")]
Error = Annotated[str | None, typer.Option(help="only where the last error contains this text")]
Since = Annotated[str | None, typer.Option(help="died after: 30m / 2h / 7d or an ISO time")]
Until = Annotated[str | None, typer.Option(help="died before: 30m / 2h / 7d ago or an ISO time")]
AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app", "-a", envvar="SOLO_OS_APP", show_envvar=False,
        help="the app, for each handler's attempt budget (default: $SOLO_OS_APP, else ./app.py if any)",
    ),
]
CHUNK = replay.CHUNK


def _filters(
    source: str | None, type_: str | None, handler: str | None, error: str | None,
    since: str | None, until: str | None, limit: int,
) -> store_mod.Filters:
    return store_mod.Filters(
        status="dead", source=source, type=type_, handler=handler, error=error,
        since=_common.parse_since(since), until=_common.parse_since(until), limit=limit,
    )


@dlq.command("list")
def dlq_list(
    source: Source = None,
    type_: Type = None,
    handler: Handler = None,
    error: Error = None,
    since: Since = None,
    until: Until = None,
    limit: records_cli.Limit = 50,
    as_json: records_cli.Json = False,
) -> None:
    """Dead executions, newest first."""
    with _common.friendly_errors():
        f = _filters(source, type_, handler, error, since, until, limit)
        rows = _common.with_store(lambda s: s.list_executions(f))
        data = [_common.as_dict(x) for x in rows]
        if as_json:
            _common.emit_json(data)
        else:
            _common.table(data, records_cli.EXECUTION_COLUMNS, f"dead executions ({len(data)})")


@dlq.command("show")
def dlq_show(execution_id: str, as_json: records_cli.Json = False) -> None:
    """One dead execution: last error, every attempt with its traceback, steps."""
    records_cli.executions_show(execution_id, as_json)


def _select(
    ids: list[str] | None, all_: bool, f: store_mod.Filters
) -> Callable[[store_mod.Store], Awaitable[list[UUID]]]:
    if ids and all_:
        raise errors.ConfigError("give execution ids or --all with filters, not both")
    if not ids and not all_:
        raise errors.ConfigError("give execution ids, or --all (with filters) for every match")
    chosen = [_common.parse_id(i, "ID") for i in ids or []]

    async def pick(store: store_mod.Store) -> list[UUID]:
        if all_:
            return await select.matching(store, f, "dead")
        return chosen

    return pick


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for a long bulk action (shown past one chunk)."""
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_common.err, transient=False, disable=total <= CHUNK,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _budgets(target: str | None) -> ops_budgets.Budgets:
    default = config.load().max_retry_attempts
    if not target:
        try:
            target = _common.app_target()
        except errors.ConfigError:
            return ops_budgets.Budgets(default)  # no app: every handler gets MAX_RETRY_ATTEMPTS
    application: app_mod.App = _common.load_app(target)
    return ops_budgets.of_app(application, default)


@dlq.command("replay")
def dlq_replay(
    ids: Ids = None,
    all_: All = False,
    source: Source = None,
    type_: Type = None,
    handler: Handler = None,
    error: Error = None,
    since: Since = None,
    until: Until = None,
    dry_run: DryRun = False,
    app: AppOpt = None,
    as_json: records_cli.Json = False,
) -> None:
    """Put dead executions back to pending with a fresh attempt budget (history is kept)."""
    with _common.friendly_errors():
        f = _filters(source, type_, handler, error, since, until, 0)
        pick = _select(ids, all_, f)
        budgets = _budgets(app)

        async def go(store: store_mod.Store) -> dict[str, Any]:
            chosen = await pick(store)
            if dry_run:
                would = await select.among(store, chosen, "dead")
                return {"dry_run": True, "would_replay": len(would), "ids": [str(i) for i in would]}
            with _progress("replaying", len(chosen)) as advance:
                done = await replay.replay(store, chosen, budgets, store_mod.utcnow(), progress=advance)
            skipped = done.skipped
            missing = set(await select.missing(store, skipped))
            return {
                "replayed": len(done.replayed),
                "not_dead": [str(i) for i in skipped if i not in missing],
                "not_found": [str(i) for i in skipped if i in missing],
            }

        result = _common.with_store(go)
        if as_json:
            _common.emit_json(result)
        elif dry_run:
            _common.out.print(f"dry run: would replay {result['would_replay']} dead execution(s)")
        else:
            _common.out.print(f"replayed {result['replayed']} execution(s)")
            if result["not_dead"]:
                _common.out.print(f"not dead (left alone): {', '.join(result['not_dead'])}")
        if not dry_run and result["not_found"]:
            # a mistyped id must not look like success to a script
            if not as_json:
                _common.err.print(f"no such execution: {', '.join(result['not_found'])}", style="red")
            raise typer.Exit(_common.EXIT_FAILED)


@dlq.command("purge")
def dlq_purge(
    ids: Ids = None,
    all_: All = False,
    source: Source = None,
    type_: Type = None,
    handler: Handler = None,
    error: Error = None,
    since: Since = None,
    until: Until = None,
    dry_run: DryRun = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    as_json: records_cli.Json = False,
) -> None:
    """Delete dead executions with their attempts and steps (their events stay)."""
    with _common.friendly_errors():
        f = _filters(source, type_, handler, error, since, until, 0)
        pick = _select(ids, all_, f)

        async def count(store: store_mod.Store) -> list[UUID]:
            return await pick(store)

        chosen = _common.with_store(count)
        if dry_run:
            if as_json:
                ids = [str(i) for i in chosen]
                _common.emit_json({"dry_run": True, "would_purge": len(ids), "ids": ids})
            else:
                _common.out.print(f"dry run: would purge up to {len(chosen)} dead execution(s)")
            return
        if not yes:
            if as_json:
                raise errors.ConfigError("--json cannot ask for confirmation: add --yes")
            if not typer.confirm(f"purge {len(chosen)} dead execution(s)?"):
                raise typer.Exit(1)

        async def go(store: store_mod.Store) -> int:
            with _progress("purging", len(chosen)) as advance:
                return await purge.purge(store, chosen, progress=advance)

        purged = _common.with_store(go)
    if as_json:
        _common.emit_json({"purged": purged})
    else:
        _common.out.print(f"purged {purged} execution(s)")
