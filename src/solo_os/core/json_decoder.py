"""The one JSON decoder solo-os uses for delivered bodies and stored payloads.

Ingress (accepting a delivery) and the worker (reading an execution's input back) decode with
the same function, so a body that was accepted can always be read again. orjson alone accepts
nesting up to 1,024 levels, deeper than the standard library, pydantic or a recursive walk can
follow on a default Python stack; solo-os documents a lower limit, ``MAX_DEPTH``, and rejects
anything deeper as not JSON (``400 invalid_payload``, stored as ``rejected``).
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects accepted in a delivered body (documented)."""


class JSONDecodeError(ValueError):
    """The bytes are not JSON solo-os accepts (malformed, or nested deeper than ``MAX_DEPTH``)."""


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode ``data`` as JSON, refusing documents nested deeper than ``MAX_DEPTH``."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONDecodeError(str(exc)) from None
    if _may_nest_deeply(data) and depth_exceeds(document, MAX_DEPTH):
        raise JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels")
    return document


def _may_nest_deeply(data: bytes | bytearray | memoryview | str) -> bool:
    """Whether ``data`` holds more than ``MAX_DEPTH`` opening brackets: each level of nesting
    opens one, so with fewer the document cannot be too deep, and the walk is skipped (most
    documents; counting in C is far cheaper than the walk)."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH
    raw = data if isinstance(data, bytes | bytearray) else bytes(data)
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def depth_exceeds(document: Any, limit: int) -> bool:
    """Whether ``document`` nests lists/dicts more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
