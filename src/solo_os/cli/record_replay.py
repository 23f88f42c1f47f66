"""``solo-os events export`` and ``events replay``: record real deliveries, play them back.

``export`` writes stored events as JSON lines: the raw body exactly as received (base64 where
it is not UTF-8) with the headers that rebuild the delivery. Signatures and credentials are
never in the file: the store never kept them, and export drops anything secret-looking again,
with the transport's own headers (host, lengths, forwarding addresses).

``replay`` posts each recorded delivery to a running solo-os, signed again with the target's
secret by the target app's own source (``Source.sign``), keeping the body and the delivery id
/ idempotency key, so a production delivery can be run against a local app; ``--repeat N``
sends each N times and the summary shows the duplicates that prove idempotency.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO

import httpx
import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from solo_os import app as app_mod
from solo_os import config, errors
from solo_os import store as store_mod
from solo_os.cli import _common
from solo_os.cli import records as records_cli
from solo_os.core import records
from solo_os.runtime import ingress
from solo_os.sources import _base as sources_base

FORMAT = "solo-os.event/1"
# Never exported, whatever the source: credentials, and what a proxy or the transport adds.
_SECRET_WORDS = ("signature", "secret", "token", "authorization", "cookie", "api-key", "apikey", "password")
_TRANSPORT = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
    "expect", "accept-encoding", "forwarded", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "via", "cdn-loop", "true-client-ip",
    "cf-connecting-ip", "cf-ray", "cf-ipcountry", "cf-visitor",
})

AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app", "-a", envvar="SOLO_OS_APP", show_envvar=False,
        help="the target's app: its sources sign the deliveries (default: $SOLO_OS_APP, else ./app.py)",
    ),
]


def exportable_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Stored headers minus anything secret-looking and the transport's own."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        if key in _TRANSPORT or any(word in key for word in _SECRET_WORDS):
            continue
        out[key] = value
    return out


def record(event: records.Event, body: bytes) -> dict[str, Any]:
    """One export line for a stored event and its raw body."""
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {
        "format": FORMAT,
        "id": str(event.id),
        "source": event.source,
        "type": event.type,
        "status": event.status,
        "idempotency_key": event.idempotency_key,
        "received_at": event.received_at.isoformat(),
        "correlation_id": event.correlation_id,
        "headers": exportable_headers(event.headers),
        "body": text,
        "body_encoding": encoding,
    }


# --- export ------------------------------------------------------------------------------------


@records_cli.events.command("export")
def events_export(
    status: records_cli.Status = None,
    source: records_cli.Source = None,
    type_: records_cli.Type = None,
    since: records_cli.Since = None,
    limit: Annotated[int, typer.Option(min=0, help="at most this many, the newest (0: all)")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of standard output")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="accepted for symmetry: the export is JSON lines (errors too)")
    ] = False,
) -> None:
    """Stored deliveries as JSON lines, oldest first (raw body and headers; never signatures)."""
    with _common.friendly_errors():
        f = store_mod.Filters(
            status=status, source=source, type=type_, since=_common.parse_since(since), limit=limit
        )
        if output is None:
            count = _common.with_store(lambda s: _export(s, f, sys.stdout))
        else:
            try:
                with output.open("w", encoding="utf-8") as fh:
                    count = _common.with_store(lambda s: _export(s, f, fh))
            except OSError as exc:
                raise errors.ConfigError(f"--output: cannot write {str(output)!r}: {exc.strerror}") from None
        _common.err.print(f"exported {count} event(s)", highlight=False)


async def _export(store: store_mod.Store, f: store_mod.Filters, out: TextIO) -> int:
    listed = await store.list_events(f)  # newest first, light columns; bodies one at a time
    count = 0
    for event in reversed(listed):
        got = await store.get_event(event.id)
        if got is None:  # pruned meanwhile
            continue
        full, body = got
        out.write(orjson.dumps(record(full, body)).decode("utf-8") + "\n")
        count += 1
    out.flush()
    return count


# --- replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    line: int
    source: str
    type: str
    idempotency_key: str
    headers: dict[str, str]
    body: bytes


def parse_line(text: str, line: int) -> Recorded:
    """One export line back into a delivery; ``ConfigError`` says what is wrong with it."""
    where = f"line {line}"
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise errors.ConfigError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{where}: expected a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise errors.ConfigError(f"{where}: format {data.get('format')!r}; this solo-os reads {FORMAT}")
    problems = [
        f"{where}: {name!r} must be a string"
        for name in ("source", "body", "idempotency_key")
        if not isinstance(data.get(name), str)
    ]
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        problems.append(f"{where}: 'headers' must be an object of strings")
    encoding = data.get("body_encoding", "utf-8")
    if encoding not in ("utf-8", "base64"):
        problems.append(f"{where}: body_encoding must be 'utf-8' or 'base64', not {encoding!r}")
    if problems:
        raise errors.ConfigError(problems)
    if encoding == "base64":
        try:
            body = base64.b64decode(data["body"], validate=True)
        except (ValueError, binascii.Error):
            raise errors.ConfigError(f"{where}: body is not base64") from None
    else:
        body = data["body"].encode("utf-8")
    return Recorded(
        line=line,
        source=data["source"],
        type=str(data.get("type") or ""),
        idempotency_key=data["idempotency_key"],
        headers=exportable_headers(headers),  # a hand-edited file gets no signature through
        body=body,
    )


def read_records(path: str) -> list[Recorded]:
    """Every delivery in an export file (``-``: standard input); all problems at once."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"FILE: cannot read {path!r}: {exc}") from None
    found: list[Recorded] = []
    problems: list[str] = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            found.append(parse_line(text, n))
        except errors.ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise errors.ConfigError(problems[:20] + more)
    return found


def rebuild(source: sources_base.Source, rec: Recorded, now: float) -> tuple[dict[str, str], str]:
    """The recorded delivery's headers, signed again by ``source``; and the idempotency key the
    target will file it under (the recorded one, unless the source definition changed)."""
    headers = {k: v for k, v in rec.headers.items() if k not in source.secret_headers}
    # A Standard Webhooks delivery recorded with Svix's header names: signing again uses the
    # spec's names, so carry the message id over (it is the idempotency key).
    if "svix-id" in headers and "webhook-id" not in headers and source.kind == "standard_webhooks":
        headers["webhook-id"] = headers.pop("svix-id")
        headers.pop("svix-timestamp", None)
    if source.verify_signatures:
        headers.update(source.sign(rec.body, now, headers))
    key: str | None
    try:
        key = source.idempotency_key(sources_base.DictHeaders(headers), orjson.loads(rec.body))
    except (orjson.JSONDecodeError, errors.PayloadError):
        key = None
    return headers, ingress.storable_key(key) if key else sources_base.digest_key(rec.body)


@records_cli.events.command("replay")
def events_replay(
    file: Annotated[str, typer.Argument(metavar="FILE", help="an export (JSON lines), or - for stdin")],
    to: Annotated[str, typer.Option("--to", help="the solo-os to send to, e.g. http://127.0.0.1:8000")],
    app: AppOpt = None,
    repeat: Annotated[int, typer.Option(min=1, max=1000, help="send each delivery N times")] = 1,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for each response")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="one result per delivery, as a JSON array")] = False,
) -> None:
    """Send recorded deliveries to a running solo-os, signed again with its secrets."""
    with _common.friendly_errors():
        application = _common.load_app(app)
        recorded = read_records(file)
        if not to.startswith(("http://", "https://")):
            raise errors.ConfigError(f"--to: {to!r} is not an http:// or https:// URL")
        needed = _bind(application, {r.source for r in recorded})
        results = asyncio.run(_replay(needed, recorded, to.rstrip("/"), repeat, timeout, quiet=as_json))
        if as_json:
            _common.emit_json(results)
        else:
            _summary(results, len(recorded), repeat)
        if any(r["outcome"] not in ("accepted", "duplicate") for r in results):
            raise typer.Exit(1)


def _bind(application: app_mod.App, names: set[str]) -> dict[str, sources_base.Source]:
    """The sources the file needs, with the target's secrets (every problem at once)."""
    env = config.environ()
    problems: list[str] = []
    found: dict[str, sources_base.Source] = {}
    for name in sorted(names):
        src = application.sources.get(name)
        if src is None:
            known = ", ".join(sorted(application.sources)) or "none"
            problems.append(
                f"the file has deliveries for source {name!r}; the app has none (it has: {known})"
            )
            continue
        problems.extend(src.bind(name, env))
        found[name] = src
    if problems:
        raise errors.ConfigError(problems)
    return found


async def _replay(
    sources: dict[str, sources_base.Source],
    recorded: list[Recorded],
    base: str,
    repeat: int,
    timeout: float,
    quiet: bool,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_common.err, disable=quiet or not _common.err.is_terminal, transient=False,
    )
    with progress:
        task = progress.add_task("replay", total=len(recorded) * repeat)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            for rec in recorded:
                src = sources[rec.source]
                for n in range(1, repeat + 1):
                    headers, key = rebuild(src, rec, time.time())
                    results.append(await _post(client, base, rec, headers, key, n))
                    progress.advance(task)
    return results


async def _post(
    client: httpx.AsyncClient, base: str, rec: Recorded, headers: dict[str, str], key: str, n: int
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "line": rec.line, "attempt": n, "source": rec.source, "type": rec.type,
        "idempotency_key": key, "key_kept": key == rec.idempotency_key,
    }
    url = f"{base}/webhooks/{rec.source}"
    try:
        r = await client.post(url, content=rec.body, headers=headers)
    except httpx.HTTPError as exc:
        return {**result, "status_code": None, "outcome": "unreachable",
                "error": f"{type(exc).__name__}: {exc}"}
    try:
        answer: Any = r.json()
    except ValueError:
        answer = None
    outcome = f"http_{r.status_code}"
    if isinstance(answer, dict):
        named = answer.get("status", answer.get("error"))
        if isinstance(named, str):
            outcome = named
    result.update(status_code=r.status_code, outcome=outcome, response=answer)
    return result


def _summary(results: list[dict[str, Any]], deliveries: int, repeat: int) -> None:
    counts = Counter(r["outcome"] for r in results)
    rows = [{"outcome": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    _common.table(rows, ("outcome", "count"), f"replayed {deliveries} delivery(ies) x {repeat}")
    changed = sum(1 for r in results if r["attempt"] == 1 and not r["key_kept"])
    if changed:
        _common.err.print(
            f"[yellow]warning[/yellow]: {changed} delivery(ies) got a different idempotency key than"
            " recorded (the source's key definition changed?); they are not duplicates of the originals",
            highlight=False,
        )
    for r in results:
        if r["outcome"] not in ("accepted", "duplicate"):
            detail = r.get("error") or orjson.dumps(r.get("response")).decode()[:300]
            _common.err.print(
                escape(f"line {r['line']} ({r['source']} {r['type']!r}) attempt {r['attempt']}: "
                       f"{r['outcome']} {detail}"),
                highlight=False,
            )

