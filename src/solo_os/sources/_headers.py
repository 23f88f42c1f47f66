"""The headers of a delivery as a source reads them: case-insensitive and multi-valued."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Headers(Protocol):
    """The part of a case-insensitive, multi-valued header mapping a source needs."""

    def getlist(self, key: str) -> list[str]: ...


class DictHeaders:
    """``Headers`` over a plain mapping (tests, the CLI's ``send``, replays)."""

    def __init__(self, items: Mapping[str, str] | Sequence[tuple[str, str]]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = [(k.lower(), v) for k, v in pairs]

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.getlist(key)
        return values[0] if values else default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class WireHeaders:
    """``Headers`` over an ASGI scope's raw ``(name, value)`` byte pairs, read as Starlette's
    ``Headers`` reads them (names as sent, lowercase in ASGI; values latin-1), but indexed once:
    the webhook route asks for a dozen headers per delivery, and Starlette scans the whole list
    for each."""

    __slots__ = ("_by_name", "_items")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        by_name: dict[str, list[str]] = {}
        for k, v in items:
            if (values := by_name.get(k)) is None:
                by_name[k] = [v]
            else:
                values.append(v)
        self._items = items
        self._by_name = by_name

    def getlist(self, key: str) -> list[str]:
        values = self._by_name.get(key.lower())
        return list(values) if values else []

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self._by_name.get(key.lower())
        return values[0] if values else default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)
