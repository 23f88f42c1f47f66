"""Pure rules of durable workflows: matching a payload against a wait's ``match``, and the
keys the store indexes waits by (so an event finds its waiters by an index lookup, never by
scanning them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from solo_os.core import ids, records

_MISSING = object()
KINDS = ("sleep", "wait", "send", "invoke")


@dataclass(frozen=True)
class CancelOn:
    """``@app.on(..., cancel_on=[CancelOn(source, type, match={"path.in.new": "path.in.original"})])``:
    when such an event is accepted, the handler's pending or waiting executions whose event
    matches are cancelled (a running one stops at its next step boundary)."""

    source: str
    type: str
    match: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CancelRule:
    """One ``CancelOn`` of one handler, as the store applies it to an accepted event: the
    handler's open executions whose event has ``original[path] == value`` for every pair."""

    handler: str
    pairs: tuple[tuple[str, str], ...]  # (path in the original event, canonical JSON of value)


def get_path(document: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``document``, or ``MISSING``."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def missing(value: Any) -> bool:
    return value is _MISSING


def canonical(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces): equal values, equal texts."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def paths_key(match: Mapping[str, Any] | None) -> str:
    """The sorted paths of a ``match`` as stored (``""`` for no match: any event counts)."""
    return "\n".join(sorted(match or {}))


def match_key(match: Mapping[str, Any] | None) -> str:
    """A digest of a ``match``'s values in path order: the index key of a wait."""
    given = match or {}
    values = [canonical(given[p]) for p in sorted(given)]
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:32]


def event_key(paths: str, payload: Any) -> str | None:
    """The key ``payload`` has under the path set ``paths``; None when a path is absent."""
    if not paths:
        return match_key(None)
    found: dict[str, Any] = {}
    for p in paths.split("\n"):
        value = get_path(payload, p)
        if missing(value):
            return None
        found[p] = value
    return match_key(found)


def matches(match: Mapping[str, Any] | None, payload: Any) -> bool:
    """Whether ``payload`` has every ``path: value`` of ``match`` (equal as JSON)."""
    for path, want in (match or {}).items():
        got = get_path(payload, path)
        if missing(got) or canonical(got) != canonical(want):
            return False
    return True


def check_match(match: Any) -> dict[str, Any]:
    """``match`` as a dict of non-empty dotted paths; ValueError when it is not one."""
    if match is None:
        return {}
    if not isinstance(match, Mapping) or not all(isinstance(k, str) and k for k in match):
        raise ValueError("match= must be a dict of dotted path -> value")
    return dict(match)


def lock_key(source: str, event_type: str) -> int:
    """The advisory lock (a signed 64-bit number) of waits for ``(source, type)``."""
    digest = hashlib.blake2b(f"wait\n{source}\n{event_type}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def cancel_rules(
    handlers: Iterable[tuple[str, Sequence[CancelOn]]], source: str, event_type: str, document: Any
) -> tuple[CancelRule, ...]:
    """The cancel rules an accepted event of ``(source, event_type)`` carries, from the
    handlers' ``cancel_on``: a rule whose path is absent from the event cancels nothing."""
    rules: list[CancelRule] = []
    for name, cancel_on in handlers:
        for c in cancel_on:
            if c.source != source or c.type != event_type:
                continue
            pairs: list[tuple[str, str]] = []
            for new_path, original_path in (c.match or {}).items():
                value = get_path(document, new_path)
                if missing(value):
                    break
                pairs.append((original_path, canonical(value)))
            else:
                rules.append(CancelRule(name, tuple(pairs)))
    return tuple(rules)


def new_event(
    *, source: str, event_type: str, data: Any, key: str, correlation_id: str,
    received_at: datetime, executions: Sequence[tuple[str, int]],
    cancels: tuple[CancelRule, ...] = (), trace_parent: str | None = None,
    marks: Sequence[records.FlowMark | None] = (),
) -> records.NewEvent:
    """An event that did not come over HTTP (``ctx.send``, ``ctx.invoke``, ``app.send``);
    ``marks``: each execution's flow keys (SPEC 7), as for a delivery."""
    flows = list(marks) or [None] * len(executions)
    text = json.dumps(data, separators=(",", ":"))
    return records.NewEvent(
        id=ids.uuid7(), source=source, idempotency_key=key[:255], type=event_type[:255],
        status="accepted", payload=text, body=text.encode(), headers={}, errors=None,
        correlation_id=correlation_id, received_at=received_at,
        executions=tuple(
            records.NewExecution(ids.uuid7(), h, n, m) for (h, n), m in zip(executions, flows, strict=True)
        ),
        trace_parent=trace_parent, cancels=cancels,
    )


def plan(
    events: Sequence[records.NewEvent], sets: Sequence[Any]
) -> dict[tuple[str, str, str, str], records.NewEvent]:
    """(source, type, paths, key) to look up -> the first event of the batch with that key
    (``sets``: the path sets waits use, as (source, type, paths) rows; SQLite's ingest)."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for s in sets:
        by_pair.setdefault((s[0], s[1]), []).append(s[2])
    lookups: dict[tuple[str, str, str, str], records.NewEvent] = {}
    for e in events:
        paths_list = by_pair.get((e.source, e.type))
        if not paths_list or e.payload is None:
            continue
        payload = json.loads(e.payload)
        for paths in paths_list:
            key = event_key(paths, payload)
            if key is not None:
                lookups.setdefault((e.source, e.type, paths, key), e)
    return lookups
