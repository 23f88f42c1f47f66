"""``scheduler`` and ``schedules list|trigger|backfill|pause|resume``."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.cli import _common
from solo_os.ops import schedules as schedules_ops
from solo_os.runtime import runtime as runtime_mod

schedules = typer.Typer(
    help="Cron schedules: list, run now, backfill, pause.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

AppArg = _common.AppArg
AppOpt = _common.AppOpt
Name = Annotated[str, typer.Argument(help="the schedule's name")]
Json = _common.Json
LIST_COLUMNS = (
    "name", "expression", "timezone", "next_fire", "last_fire", "last_result", "failures", "paused",
)
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def scheduler(app_arg: AppArg = None, app: AppOpt = None) -> None:
    """Only the scheduler: fires the app's schedules (exactly once across replicas)."""
    with _common.friendly_errors():
        application = _common.load_app(app_arg, app)
        _common.check_database(application.settings.database_url, create=False)
        _common.setup_logging(application.settings, application.service)
        if not application.schedules:
            structlog.get_logger("solo_os.scheduler").warning(
                "scheduler.no_schedules", message="this app declares no @app.cron schedule"
            )
        rt = runtime_mod.Runtime(application, roles=("scheduler",))
        rt.prepare()
        asyncio.run(rt.run_worker())


def _app(target: str | None) -> app_mod.App:
    return _common.load_app(target)


@schedules.command("list")
def schedules_list(app_arg: AppArg = None, app: AppOpt = None, as_json: Json = False) -> None:
    """Every schedule: expression, zone, next fire, last fire and its result, failures, paused."""
    with _common.friendly_errors():
        application = _common.load_app(app_arg, app)
        names = sorted(application.schedules)
        found = _common.with_store(lambda s: schedules_ops.status(application, s, names))
        now = datetime.now(UTC)
        rows = [_list_row(status, now) for status in found]
        if as_json:
            _common.emit_json(rows)
        else:
            _common.table(rows, LIST_COLUMNS, f"schedules ({len(rows)})")


def _list_row(status: schedules_ops.Status, now: datetime) -> dict[str, Any]:
    sched, info = status.schedule, status.info
    return {
        "name": sched.name,
        "expression": sched.expression,
        "timezone": sched.timezone,
        "overlap": sched.overlap,
        "catchup": sched.catchup,
        "next_fire": sched.cron.next_after(now),
        "last_fire": info.last_fire_at,
        "last_kind": info.last_kind,
        "last_result": status.last_result,
        "last_execution_id": info.last_execution_id,
        "failures": info.failures,
        "queued": info.queued,
        "paused": info.paused,
        "paused_at": info.paused_at,
    }


@schedules.command("trigger")
def schedules_trigger(name: Name, app: AppOpt = None, as_json: Json = False) -> None:
    """Run a schedule now (a fire at the current time, marked manual; runs even when paused)."""
    with _common.friendly_errors():
        application = _app(app)
        schedules_ops.lookup(application, name)

        async def go(store: store_mod.Store) -> Any:
            return await schedules_ops.trigger(application, store, name, store_mod.utcnow())

        xid = _common.with_store(go)
        if as_json:
            _common.emit_json({"schedule": name, "execution_id": str(xid)})
        else:
            _common.out.print(f"triggered {name}: execution {xid}")
            _common.out.print(f"follow it: solo-os executions show {xid}", highlight=False)


def _pause(name: str, app: str | None, paused: bool, as_json: bool) -> None:
    with _common.friendly_errors():
        application = _app(app)
        schedules_ops.lookup(application, name)
        changed = _common.with_store(
            lambda s: schedules_ops.set_paused(application, s, name, paused, store_mod.utcnow())
        )
    word = "paused" if paused else "resumed"
    if as_json:
        _common.emit_json({"schedule": name, "paused": paused, "changed": bool(changed)})
    else:
        _common.out.print(f"{word} {name}" if changed else f"{name} was already {word}")


@schedules.command("pause")
def schedules_pause(name: Name, app: AppOpt = None, as_json: Json = False) -> None:
    """Stop firing a schedule, on every scheduler (kept in the database)."""
    _pause(name, app, True, as_json)


@schedules.command("resume")
def schedules_resume(name: Name, app: AppOpt = None, as_json: Json = False) -> None:
    """Fire a paused schedule again, from now on (the paused time is not caught up)."""
    _pause(name, app, False, as_json)


def parse_time(value: str, what: str, zone: Any) -> datetime:
    """``2d`` (ago), or ISO 8601; an ISO time without an offset is in the schedule's zone."""
    m = _RELATIVE.match(value.strip())
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise errors.ConfigError(f"{what}: {value!r} is neither like 2h/7d nor an ISO time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)


@schedules.command("backfill")
def schedules_backfill(
    name: Name,
    from_: Annotated[
        str, typer.Option("--from", help="ISO time (in the schedule's zone unless it has an offset) or 7d")
    ],
    to: Annotated[str, typer.Option("--to", help="ISO time or 1h (ago); at the latest now")],
    app: AppOpt = None,
    parallel: Annotated[
        bool, typer.Option("--parallel", help="start every fire at once instead of one after another")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the fire times, record nothing")] = False,
    as_json: Json = False,
) -> None:
    """Run the fires of a past window on purpose (fires already recorded are not repeated).

    Fires run one after another (the scheduler starts the next when the previous finished)
    unless the schedule's overlap is "allow" or --parallel is given.
    """
    with _common.friendly_errors():
        application = _app(app)
        sched = schedules_ops.lookup(application, name)
        start = parse_time(from_, "--from", sched.cron.zone)
        end = parse_time(to, "--to", sched.cron.zone)
        now = store_mod.utcnow()
        window = schedules_ops.plan_backfill(sched, start, end, now)
        if dry_run:
            _dry_backfill(window, as_json)
            return

        async def go(store: store_mod.Store) -> schedules_ops.Backfilled:
            times = window.times
            with Progress(
                TextColumn(f"backfilling {name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=_common.err, transient=False, disable=as_json or not times,
            ) as progress:
                task = progress.add_task("backfill", total=len(times))
                return await schedules_ops.backfill(
                    application, store, window, now=now, parallel=parallel,
                    progress=lambda n: progress.advance(task, n),
                )

        _report_backfill(name, _common.with_store(go), as_json)


def _report_backfill(name: str, result: schedules_ops.Backfilled, as_json: bool) -> None:
    data = {
        "schedule": name,
        "fires": result.fires,
        "created": result.created,
        "already_recorded": result.existing,
        "started": len(result.executions),
        "queued": result.created - len(result.executions),
    }
    if as_json:
        _common.emit_json(data)
    else:
        _common.out.print(
            f"backfilled {name}: {result.created} new fire(s) of {result.fires} "
            f"({result.existing} already recorded); {data['started']} started, {data['queued']} queued"
        )


def _dry_backfill(window: schedules_ops.Window, as_json: bool) -> None:
    name, times = window.schedule.name, window.times
    if as_json:
        _common.emit_json({"schedule": name, "dry_run": True, "fires": [t.isoformat() for t in times]})
    else:
        _common.out.print(f"dry run: {len(times)} fire(s) of {name} between {window.start} and {window.end}")
