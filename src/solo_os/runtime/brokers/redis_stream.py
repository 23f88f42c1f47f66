"""Redis Streams through redis-py's asyncio client (``solo-os[redis]``), in a consumer group.

The group is created at id ``0`` when missing (the stream must exist). The consumer's name is
stable (the host name, or ``consumer=``), so a restarted process first reads back the entries
it had read but not acknowledged (its pending list, from id ``0``) before new ones (``>``).
Entries left pending by another consumer for ``claim_idle_seconds`` are claimed
(``XAUTOCLAIM``): a consumer that died on another host does not strand its entries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from solo_os.runtime.brokers import _message
from solo_os.sources import queue as queue_sources


class RedisStreamBroker:
    def __init__(self, source: queue_sources.RedisStream) -> None:
        self.source = source
        self._redis: Any = None
        self._own_pending = True
        self._next_claim = 0.0

    async def open(self) -> None:
        import redis.asyncio as aioredis  # the optional extra: only where Redis is read
        from redis import exceptions

        s = self.source
        self._redis = aioredis.from_url(s.url, socket_timeout=max(10.0, s.claim_idle_seconds))
        try:
            await self._redis.xgroup_create(s.stream, s.group, id="0")
        except exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # BUSYGROUP: it exists already
                raise _message.BrokerError(
                    f"Redis stream {s.stream!r}: cannot create group {s.group!r}: {exc}"
                ) from exc
        except exceptions.RedisError as exc:
            raise _message.BrokerError(f"Redis: {exc}") from exc
        self._own_pending = True  # what this consumer read before it stopped comes first
        self._next_claim = 0.0

    async def fetch(self, limit: int, wait: float) -> list[_message.Message]:
        from redis import exceptions

        try:
            if self._own_pending:
                found = await self._read("0", limit, None)
                if found:
                    return found
                self._own_pending = False
            if time.monotonic() >= self._next_claim:
                self._next_claim = time.monotonic() + self.source.claim_idle_seconds / 2
                claimed = await self._claim(limit)
                if claimed:
                    return claimed
            return await self._read(">", limit, max(1, int(wait * 1000)))
        except exceptions.RedisError as exc:
            raise _message.BrokerError(f"Redis: {exc}") from exc

    async def _read(self, start: str, limit: int, block: int | None) -> list[_message.Message]:
        s = self.source
        answer = await self._redis.xreadgroup(
            s.group, s.consumer, {s.stream: start}, count=limit, block=block
        )
        entries = answer[0][1] if answer else []
        return await self._messages(entries)

    async def _claim(self, limit: int) -> list[_message.Message]:
        s = self.source
        answer = await self._redis.xautoclaim(
            s.stream, s.group, s.consumer, int(s.claim_idle_seconds * 1000), "0-0", count=limit
        )
        return await self._messages(answer[1] if answer else [])

    async def _messages(self, entries: Sequence[Any]) -> list[_message.Message]:
        out: list[_message.Message] = []
        gone: list[Any] = []
        field = self.source.field_name.encode()
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream (XDEL, MAXLEN) while pending
                gone.append(entry_id)
                continue
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            others = {k: v for k, v in fields.items() if k != field}
            out.append(
                _message.Message(
                    body=fields.get(field, b""),
                    message_id=ident,
                    headers=_message.text_headers(others),
                    handle=entry_id,
                )
            )
        if gone:
            await self._redis.xack(self.source.stream, self.source.group, *gone)
        return out

    async def ack(self, messages: Sequence[_message.Message]) -> None:
        from redis import exceptions

        if not messages:
            return
        try:
            await self._redis.xack(self.source.stream, self.source.group, *(m.handle for m in messages))
        except exceptions.RedisError as exc:
            raise _message.BrokerError(f"Redis XACK: {exc}") from exc

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
