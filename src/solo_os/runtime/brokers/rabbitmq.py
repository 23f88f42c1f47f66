"""RabbitMQ through aio-pika (``solo-os[rabbitmq]``): a consumer with manual acknowledgement.

The queue (and its bindings) must exist; it is declared passively. Up to twice the batch size
is delivered ahead (``prefetch_count``); a message not acknowledged when the channel closes (a
crash, a store outage that outlasts the connection) goes back to the queue and comes again,
redelivered, as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from solo_os.runtime.brokers import _message
from solo_os.sources import queue as queue_sources


class RabbitMQBroker:
    def __init__(self, source: queue_sources.RabbitMQ) -> None:
        self.source = source
        self._connection: Any = None
        self._channel: Any = None
        self._buffer: asyncio.Queue[Any] = asyncio.Queue()

    async def open(self) -> None:
        import aio_pika  # the optional extra: only where RabbitMQ is read

        self._buffer = asyncio.Queue()
        try:
            self._connection = await aio_pika.connect(self.source.url, timeout=10)
            self._channel = await self._connection.channel()
            await self._channel.set_qos(prefetch_count=2 * self.source.batch_size)
            queue = await self._channel.get_queue(self.source.queue, ensure=True)
            await queue.consume(self._buffer.put, no_ack=False)
        except Exception as exc:
            await self.close()
            raise _message.BrokerError(f"RabbitMQ queue {self.source.queue!r}: {exc}") from exc

    async def fetch(self, limit: int, wait: float) -> list[_message.Message]:
        if self._channel is None or self._channel.is_closed:
            raise _message.BrokerError("RabbitMQ: the channel is closed")
        try:
            first = await asyncio.wait_for(self._buffer.get(), wait)
        except TimeoutError:
            return []
        taken = [first]
        while len(taken) < limit and not self._buffer.empty():
            taken.append(self._buffer.get_nowait())
        return [self._convert(m) for m in taken]

    @staticmethod
    def _convert(m: Any) -> _message.Message:
        headers = dict(_message.text_headers(m.headers))
        if m.correlation_id:
            headers.setdefault("x-correlation-id", str(m.correlation_id))
        if m.type:
            headers.setdefault("x-amqp-type", str(m.type))
        return _message.Message(
            body=m.body, message_id=m.message_id, headers=tuple(headers.items()), handle=m
        )

    async def ack(self, messages: Sequence[_message.Message]) -> None:
        if not messages:
            return
        # One frame for the batch: deliveries on a channel are acknowledged in order, and every
        # delivery before this batch's last was in this batch or an earlier, acknowledged one.
        try:
            await messages[-1].handle.ack(multiple=True)
        except Exception as exc:
            raise _message.BrokerError(f"RabbitMQ ack: {exc}") from exc

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
