"""NATS JetStream through nats-py (``solo-os[nats]``): a durable pull consumer.

The stream must exist; the durable consumer (``durable=``, filtered on ``subject=``) is created
when missing, with explicit acknowledgement. A message not acknowledged within
``ack_wait_seconds`` (a crash, a store outage) is delivered again, as a duplicate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from solo_os.runtime.brokers import _message
from solo_os.sources import queue as queue_sources


class NATSBroker:
    def __init__(self, source: queue_sources.NATS) -> None:
        self.source = source
        self._nc: Any = None
        self._sub: Any = None

    async def open(self) -> None:
        import nats  # the optional extra: only where NATS is read

        try:
            self._nc = await nats.connect(
                self.source.url, connect_timeout=5, allow_reconnect=True, max_reconnect_attempts=-1
            )
            js = self._nc.jetstream()
            await self._ensure_consumer(js)
            self._sub = await js.pull_subscribe_bind(self.source.durable, self.source.stream)
        except Exception as exc:
            await self.close()
            raise _message.BrokerError(f"NATS stream {self.source.stream!r}: {exc}") from exc

    async def _ensure_consumer(self, js: Any) -> None:
        from nats.js import api
        from nats.js import errors as js_errors

        s = self.source
        try:
            await js.consumer_info(s.stream, s.durable)
            return
        except js_errors.NotFoundError:
            pass
        config = api.ConsumerConfig(
            durable_name=s.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=s.subject,
            ack_wait=s.ack_wait_seconds,
            max_ack_pending=max(1000, 4 * s.batch_size),
        )
        await js.add_consumer(s.stream, config)

    async def fetch(self, limit: int, wait: float) -> list[_message.Message]:
        import nats.errors

        try:
            found = await self._sub.fetch(limit, timeout=max(0.1, wait))
        except (nats.errors.TimeoutError, TimeoutError):  # no message within the wait
            return []
        except Exception as exc:
            raise _message.BrokerError(f"NATS fetch: {exc}") from exc
        return [self._convert(m) for m in found]

    def _convert(self, m: Any) -> _message.Message:
        headers = dict(_message.text_headers(m.headers))
        ident = headers.get("Nats-Msg-Id")
        if not ident:
            ident = f"{self.source.stream}:{m.metadata.sequence.stream}"
        return _message.Message(body=m.data, message_id=ident, headers=tuple(headers.items()), handle=m)

    async def ack(self, messages: Sequence[_message.Message]) -> None:
        try:
            for m in messages:
                await m.handle.ack()
            await self._nc.flush(timeout=10)
        except Exception as exc:
            raise _message.BrokerError(f"NATS ack: {exc}") from exc

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
