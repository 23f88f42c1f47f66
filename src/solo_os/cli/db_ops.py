"""``db prune`` and ``db stats``: retention and table sizes (registered on ``records.db``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer

from solo_os import errors
from solo_os import store as store_mod
from solo_os.cli import _common, records
from solo_os.store import _retention

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_age(value: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` as a duration."""
    m = _AGE.match(value.strip().lower())
    if not m:
        raise errors.ConfigError(f"--older-than: {value!r} is not like 30d, 12h, 2w or 90m")
    seconds = float(m.group(1)) * _SECONDS[m.group(2)]
    if seconds > 100 * 365 * 86_400:
        raise errors.ConfigError(f"--older-than: {value!r} is more than a century")
    return timedelta(seconds=seconds)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


@records.db.command("prune")
def db_prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="age to prune at, like 30d or 12h (default: SOLO_OS_RETENTION_DAYS days)",
        ),
    ] = None,
    include_dead: Annotated[
        bool, typer.Option("--include-dead", help="prune dead executions too (the DLQ)")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON object for scripts")] = False,
) -> None:
    """Delete finished executions and old events (idempotency keys stay at least 7 days)."""
    with _common.friendly_errors():
        if older_than is not None:
            age = parse_age(older_than)
        else:
            days = _common.settings().retention_days
            if not days:
                raise errors.ConfigError(
                    "SOLO_OS_RETENTION_DAYS is 0 (retention off); pass --older-than to prune anyway"
                )
            age = timedelta(days=days)

        async def go(store: store_mod.Store) -> _retention.PruneResult:
            return await store.prune(age, include_dead=include_dead, dry_run=dry_run)

        result = _common.with_store(go)
    data: dict[str, Any] = {
        "dry_run": result.dry_run,
        "executions": result.executions,
        "events": result.events,
        "execution_cutoff": result.execution_cutoff,
        "event_cutoff": result.event_cutoff,
        "include_dead": include_dead,
    }
    if as_json:
        _common.emit_json(data)
        return
    verb = "would delete" if dry_run else "deleted"
    _common.out.print(
        f"{verb} {result.executions} execution(s) finished before "
        f"{_common.cell(result.execution_cutoff)} and {result.events} event(s) received "
        f"before {_common.cell(result.event_cutoff)}",
        highlight=False,
    )


@records.db.command("stats")
def db_stats(
    as_json: Annotated[bool, typer.Option("--json", help="a JSON object for scripts")] = False,
) -> None:
    """Rows and size (with indexes) of every table, and the database's total size."""
    with _common.friendly_errors():

        async def go(store: store_mod.Store) -> tuple[_retention.DatabaseStats, dict[str, int]]:
            return await store.table_stats(), await store.counts()

        stats, by_status = _common.with_store(go)
    tables: list[dict[str, Any]] = [{"table": t.name, "rows": t.rows, "bytes": t.bytes} for t in stats.tables]
    if as_json:
        _common.emit_json(
            {
                "dialect": stats.dialect,
                "total_bytes": stats.total_bytes,
                "tables": tables,
                "executions_by_status": by_status,
            }
        )
        return
    _common.table(
        [{**t, "size": human_bytes(t["bytes"])} for t in tables],
        ("table", "rows", "size"),
        f"{stats.dialect} database, {human_bytes(stats.total_bytes)} in all",
    )
    _common.out.print("executions: " + ", ".join(f"{k} {v}" for k, v in by_status.items()), highlight=False)
