"""``solo-os events revalidate``: judge rejected events again with the app's current schemas.

A delivery that failed its schema is stored ``rejected`` with the errors, so nothing is lost.
After the schema (or the handler set) is fixed, this command runs every matching rejected
event through the use case the dashboard uses too (``ops.revalidate``: ``ingress.build_event``
from the stored body and headers, under the stored idempotency key, then ``Store.ingest``,
which turns the rejected row into an accepted one and creates its executions in the same
transaction). Events that still fail stay rejected, with the new errors. Bodies are loaded a
batch at a time, in one query per batch.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from solo_os import app as app_mod
from solo_os import store as store_mod
from solo_os.cli import _common
from solo_os.cli import records as records_cli
from solo_os.core import records
from solo_os.ops import revalidate as revalidate_ops

SHOWN = 50
AppOpt = _common.AppOpt
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would be accepted, change nothing")]
Since = Annotated[str | None, typer.Option(help="received after: 30m / 2h / 7d ago or an ISO time")]


@records_cli.events.command("revalidate")
def events_revalidate(
    app: AppOpt = None,
    source: records_cli.Source = None,
    type_: records_cli.Type = None,
    since: Since = None,
    dry_run: DryRun = False,
    as_json: records_cli.Json = False,
) -> None:
    """Validate rejected events again with the current schemas; accept those that now pass."""
    with _common.friendly_errors():
        application = _common.load_app(app)
        f = store_mod.Filters(
            status="rejected", source=source, type=type_, since=_common.parse_since(since), limit=0
        )
        results = asyncio.run(_revalidate(application, f, dry_run))
        if as_json:
            _common.emit_json(results)
            return
        _report(results, dry_run)


async def _revalidate(application: app_mod.App, f: store_mod.Filters, dry_run: bool) -> list[dict[str, Any]]:
    store = store_mod.connect(application.settings.database_url)
    try:
        rejected = await store.list_events(f)
        rejected.reverse()  # oldest first: the order they arrived in
        with Progress(
            TextColumn("revalidating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=_common.err, transient=False, disable=not rejected,
        ) as progress:
            task = progress.add_task("revalidating", total=len(rejected))
            verdicts = await revalidate_ops.revalidate_ids(
                application, store, [e.id for e in rejected], now=datetime.now(UTC), dry_run=dry_run,
                progress=lambda n: progress.advance(task, n),
            )
        by_id = {v.event_id: v for v in verdicts}
        return [_row(listed, by_id.get(listed.id), dry_run) for listed in rejected]
    finally:
        await store.close()


def _row(listed: records.Event, v: revalidate_ops.Revalidated | None, dry_run: bool) -> dict[str, Any]:
    """One event's line, in this command's words (``still_rejected``, ``would_accept``, ...)."""
    row: dict[str, Any] = {
        "id": str(listed.id), "source": listed.source, "type": listed.type,
        "idempotency_key": listed.idempotency_key,
    }
    if v is None:
        row.update(outcome="gone")  # purged since it was listed
    elif v.reason == "unknown_source":
        row.update(outcome="skipped", reason=f"the app has no source {listed.source!r}")
    elif v.reason == "not_an_event":  # a handshake (never stored as an event in the first place)
        row.update(outcome="skipped", reason="not an event")
    elif v.reason == "not_rejected":  # a redelivery accepted it meanwhile; nothing new runs
        row.update(outcome="duplicate", event_id=str(v.event_id), executions=0)
    elif v.outcome == "rejected":
        row.update(outcome="still_rejected", type=v.type, errors=v.errors or [])
    elif dry_run:
        row.update(type=v.type, executions=v.executions, outcome="would_accept")
    else:
        row.update(type=v.type, executions=v.executions, outcome="accepted", event_id=str(v.event_id))
    return row


def _report(results: list[dict[str, Any]], dry_run: bool) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    # The accepted first: they are the news; the rest is what still needs a fix.
    ordered = sorted(results, key=lambda r: r["outcome"] not in ("accepted", "would_accept"))
    rows = [{**r, "result": _describe(r)} for r in ordered[:SHOWN]]
    if results:
        _common.table(rows, ("id", "source", "type", "result"), f"rejected events ({len(results)})")
        if len(results) > len(rows):
            _common.out.print(f"... and {len(results) - len(rows)} more (--json lists all)")
    accepted = counts.get("would_accept" if dry_run else "accepted", 0)
    verb = "would be accepted" if dry_run else "accepted"
    _common.out.print(
        f"{len(results)} rejected event(s) examined: {accepted} {verb}, "
        f"{counts.get('still_rejected', 0)} still rejected"
        + "".join(
            f", {n} {escape(k.replace('_', ' '))}"
            for k, n in sorted(counts.items())
            if k not in ("accepted", "would_accept", "still_rejected")
        ),
        highlight=False,
    )


def _describe(r: dict[str, Any]) -> str:
    outcome = r["outcome"]
    if outcome in ("accepted", "would_accept"):
        verb = "accepted" if outcome == "accepted" else "would be accepted"
        return f"{verb} ({r.get('executions', 0)} execution(s))"
    if outcome == "still_rejected":
        first = (r.get("errors") or [{}])[0]
        loc = ".".join(str(p) for p in first.get("loc", [])) or "body"
        return f"still rejected: {loc}: {first.get('msg', '')}"
    return f"{outcome.replace('_', ' ')}" + (f": {r['reason']}" if r.get("reason") else "")
