"""What every broker adapter hands the consumer: messages, and the face it reads them through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from solo_os import errors


class BrokerError(errors.SoloOSError):
    """The broker cannot be read or acknowledged now (the consumer reconnects and retries)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as read: its bytes, the broker's id for it, its string headers (message
    attributes, AMQP headers, NATS headers, the entry's other fields) and what ``ack`` needs."""

    body: bytes
    message_id: str | None
    headers: tuple[tuple[str, str], ...]
    handle: Any


class Broker(Protocol):
    async def open(self) -> None: ...
    async def fetch(self, limit: int, wait: float) -> list[Message]: ...
    async def ack(self, messages: Sequence[Message]) -> None: ...
    async def close(self) -> None: ...


def text_headers(items: Any) -> tuple[tuple[str, str], ...]:
    """The string-valued entries of a header mapping (bytes decoded as UTF-8), others dropped."""
    out: list[tuple[str, str]] = []
    for key, value in (items or {}).items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
        if isinstance(value, str) and len(value) <= 8192:
            out.append((k, value))
    return tuple(out)
