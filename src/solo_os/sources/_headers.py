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
