"""``events``, ``executions`` and ``db``: look into the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from solo_os import store as store_mod
from solo_os.cli import _common
from solo_os.core import records
from solo_os.ops import timeline

_GROUP: dict[str, Any] = {"no_args_is_help": True, "add_completion": False, "rich_markup_mode": None}
events = typer.Typer(help="Stored webhook deliveries.", **_GROUP)
executions = typer.Typer(help="Handler executions and their attempts.", **_GROUP)
db = typer.Typer(help="The database: schema, retention and size.", **_GROUP)

Json = _common.Json
Status = Annotated[str | None, typer.Option(help="only this status")]
Source = Annotated[str | None, typer.Option(help="only this source")]
Type = Annotated[str | None, typer.Option("--type", help="only this event type")]
Since = Annotated[str | None, typer.Option(help="newer than 30m / 2h / 7d or an ISO time")]
Limit = Annotated[int, typer.Option(min=0, help="at most this many (0: all)")]

EVENT_COLUMNS = ("id", "source", "type", "status", "idempotency_key", "received_at", "correlation_id")
EXECUTION_COLUMNS = (
    "id", "handler", "status", "reason", "attempts", "last_error", "event_id", "updated_at"
)


@db.command("upgrade")
def db_upgrade(as_json: Json = False) -> None:
    """Bring the schema to the newest revision (safe to run from several hosts at once)."""
    with _common.friendly_errors():

        async def go(store: store_mod.Store) -> str:
            return await store.migrate()

        revision = _common.with_store(go, create=True)
    if as_json:
        _common.emit_json({"revision": revision, "database": _common.database_location()})
    else:
        _common.out.print(f"schema at revision {revision}")


@events.command("list")
def events_list(
    status: Status = None,
    source: Source = None,
    type_: Type = None,
    since: Since = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    """Newest first."""
    with _common.friendly_errors():
        f = store_mod.Filters(
            status=status, source=source, type=type_, since=_common.parse_since(since), limit=limit
        )
        rows = _common.with_store(lambda s: s.list_events(f))
        data = [_event_json(e) for e in rows]
        if as_json:
            _common.emit_json(data)
        else:
            _common.table(data, EVENT_COLUMNS, f"events ({len(data)})")


@events.command("show")
def events_show(event_id: str, as_json: Json = False) -> None:
    """One event: headers (signatures removed), payload, errors and its executions."""
    with _common.friendly_errors():
        eid = _common.parse_id(event_id, "EVENT_ID")

        async def go(store: store_mod.Store) -> Any:
            found = await store.get_event(eid)
            if found is None:
                return None
            runs = await store.list_executions(store_mod.Filters(limit=0), event_id=eid)
            return found, runs

        got = _common.with_store(go)
        if got is None:
            raise _common.NotFound(f"no event {eid}")
        (event, body), runs = got
        data = _event_json(event, full=True)
        data["body"] = body.decode("utf-8", "replace")
        data["executions"] = [_common.as_dict(x) for x in runs]
        if as_json:
            _common.emit_json(data)
            return
        for key in (*EVENT_COLUMNS, "errors", "headers"):
            _common.out.print(f"[bold]{key}[/bold]: {data.get(key)}", highlight=False)
        _common.out.print("[bold]payload[/bold]:")
        _common.out.print_json(data=data.get("payload"))
        _common.table(data["executions"], EXECUTION_COLUMNS, "executions")


@executions.command("list")
def executions_list(
    status: Status = None,
    source: Source = None,
    type_: Type = None,
    handler: Annotated[str | None, typer.Option(help="only this handler")] = None,
    since: Since = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    """Newest first."""
    with _common.friendly_errors():
        f = store_mod.Filters(
            status=status, source=source, type=type_, handler=handler,
            since=_common.parse_since(since), limit=limit,
        )
        rows = _common.with_store(lambda s: s.list_executions(f))
        data = [_common.as_dict(x) for x in rows]
        if as_json:
            _common.emit_json(data)
        else:
            _common.table(data, EXECUTION_COLUMNS, f"executions ({len(data)})")


@executions.command("show")
def executions_show(execution_id: str, as_json: Json = False) -> None:
    """One execution with every attempt (errors and tracebacks)."""
    with _common.friendly_errors():
        xid = _common.parse_id(execution_id, "EXECUTION_ID")

        async def go(store: store_mod.Store) -> Any:
            found = await store.get_execution(xid)
            if found is None:
                return None
            steps = await store.load_steps(xid)
            return found, await store.list_attempts(xid), steps, await timeline.timeline(store, xid)

        got = _common.with_store(go)
        if got is None:
            raise _common.NotFound(f"no execution {xid}")
        execution, attempts, steps, entries = got
        data = _common.as_dict(execution)
        data["attempt_history"] = [_common.as_dict(a) for a in attempts]
        data["steps"] = steps
        data["timeline"] = [_common.as_dict(e) for e in entries]
        if as_json:
            _common.emit_json(data)
            return
        for key in ("id", "handler", "status", "reason", "attempts", "max_attempts", "event_id",
                    "correlation_id", "last_error", "created_at", "updated_at", "run_after",
                    "parent_id", "result"):
            _common.out.print(f"[bold]{key}[/bold]: {data.get(key)}", highlight=False)
        if entries:
            _common.table(
                data["timeline"], ("kind", "name", "status", "at", "until", "waits_for", "ended_at"),
                "timeline",
            )
        _common.table(
            data["attempt_history"],
            ("attempt", "outcome", "started_at", "ended_at", "worker_id", "error_type", "error_message"),
            "attempts",
        )
        for a in attempts:
            if a.traceback:
                _common.out.print(
                    f"[bold]attempt {a.attempt} traceback[/bold]:\n{a.traceback}", highlight=False
                )


def _event_json(e: records.Event, full: bool = False) -> dict[str, Any]:
    data = _common.as_dict(e)
    if not full:
        for key in ("payload", "headers", "errors"):
            data.pop(key, None)
    return data
