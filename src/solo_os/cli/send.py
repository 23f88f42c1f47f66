"""``solo-os send``: a correctly signed test delivery for any source, like ``stripe trigger``.

The delivery is built by the source itself (``Source.build_delivery``): the provider's
envelope, headers, ids and timestamp, signed with the first secret configured for the source,
so it passes the same verification a real one does. ``--repeat`` sends the very same delivery
again, to watch deduplication answer ``duplicate``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.markup import escape

from solo_os import config, errors
from solo_os.cli import _common
from solo_os.sources import _base as sources_base

DEFAULT_URL = "http://127.0.0.1:8000"
AppOpt = _common.AppOpt


def read_data(value: str) -> Any:
    """``--data``: the path of a JSON file, or JSON text."""
    text = value
    path = Path(value)
    looks_like_json = value.lstrip()[:1] in ("{", "[", '"') or value.strip() in ("null", "true", "false")
    if not looks_like_json:
        try:
            is_file = path.is_file()
        except OSError:  # a name too long for the file system is not a file
            is_file = False
        if is_file:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise errors.ConfigError(f"--data: cannot read {value!r}: {exc}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        where = f"file {value!r}" if text is not value else "the text given"
        hint = "" if text is not value or looks_like_json else " (and no such file)"
        raise errors.ConfigError(f"--data: {where} is not JSON{hint}: {exc}") from None


def send(
    source: Annotated[
        str, typer.Argument(metavar="SOURCE", help="the source's name in the app (/webhooks/SOURCE)")
    ],
    event_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="the event type: invoice.paid, issues.opened, ...")
    ],
    data: Annotated[
        str, typer.Option("--data", "-d", help="the event's data: a JSON file's path or JSON text")
    ],
    url: Annotated[str, typer.Option(help="where solo-os listens")] = DEFAULT_URL,
    repeat: Annotated[int, typer.Option(min=1, max=10_000, help="send the same delivery N times")] = 1,
    app: AppOpt = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for each response")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="the responses as a JSON array")] = False,
) -> None:
    """Send a correctly signed test delivery to a running solo-os (exit 1 unless all are 2xx)."""
    with _common.friendly_errors():
        application = _common.load_app(app)
        found = application.sources.get(source)
        if found is None:
            known = ", ".join(sorted(application.sources)) or "none"
            raise errors.ConfigError(f"SOURCE: the app has no source {source!r} (it has: {known})")
        if not found.http:
            raise errors.ConfigError(
                f"SOURCE: {source!r} is queue-fed (no HTTP route): publish to its broker instead"
            )
        problems = found.bind(source, config.environ())
        if problems:
            raise errors.ConfigError(problems)
        if not url.startswith(("http://", "https://")):
            raise errors.ConfigError(f"--url: {url!r} is not an http:// or https:// URL")
        payload = read_data(data)
        body, headers = found.build_delivery(event_type, payload, time.time())
        target = url.rstrip("/") + f"/webhooks/{source}"
        key = _key(found, headers, body)
        if not as_json:
            _common.err.print(
                escape(f"POST {target} ({found.kind} {event_type!r}, key {key}, {len(body)} bytes)"),
                highlight=False,
                soft_wrap=True,
            )
        results = _post(target, body, headers, repeat, timeout, as_json)
        if as_json:
            _common.emit_json(results)
        if any(not 200 <= r["status_code"] < 300 for r in results):
            raise typer.Exit(1)


def _key(source: sources_base.Source, headers: dict[str, str], body: bytes) -> str:
    """The idempotency key the server will file this delivery under (JSON or a form)."""
    wrapped = sources_base.DictHeaders(headers)
    try:
        raw = source.idempotency_key(wrapped, source.decode(wrapped, body))
    except errors.PayloadError:
        raw = None
    return raw or sources_base.digest_key(body)


def _post(
    target: str, body: bytes, headers: dict[str, str], repeat: int, timeout: float, quiet: bool
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with httpx.Client(timeout=timeout) as client:
        for n in range(1, repeat + 1):
            try:
                r = client.post(target, content=body, headers=headers)
            except httpx.HTTPError as exc:
                _common.fail(
                    "unreachable",
                    [
                        f"cannot reach {target} ({type(exc).__name__}: {exc}); "
                        "is `solo-os run` listening there?"
                    ],
                    _common.EXIT_FAILED,
                )
            try:
                answer: Any = r.json()
            except ValueError:
                answer = r.text[:500]
            results.append({"attempt": n, "status_code": r.status_code, "response": answer})
            if not quiet:
                shown = orjson.dumps(answer).decode() if not isinstance(answer, str) else answer
                colour = "green" if 200 <= r.status_code < 300 else "red"
                _common.out.print(
                    f"{n}/{repeat} [{colour}]{r.status_code}[/{colour}] {escape(shown)}", highlight=False
                )
    return results
