"""The real brokers on this machine, one small kit each: create a uniquely named queue, publish,
count what is not acknowledged yet, delete.

Redis (127.0.0.1:6379), RabbitMQ (127.0.0.1:5672, guest/guest) and NATS JetStream
(127.0.0.1:4222) run here; SQS is moto's server mode, started by the ``moto_sqs`` fixture.
Outside CI a missing broker skips its tests; under ``CI=true`` it fails them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from solo_os import sources
from solo_os.sources import queue as queue_sources

REDIS_URL = os.environ.get("SOLO_OS_TEST_REDIS", "redis://127.0.0.1:6379/0")
RABBIT_URL = os.environ.get("SOLO_OS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("SOLO_OS_TEST_NATS", "nats://127.0.0.1:4222")
KINDS = ("sqs", "redis", "rabbitmq", "nats")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_DEFAULT_REGION": "us-east-1",
}


def reachable(url: str) -> str | None:
    """None when something listens at the URL's host and port, else why not."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return None
    except OSError as exc:
        return f"{url}: {exc}"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def message(kind: str, ref: str, amount: int = 1, event_type: str = "order.created") -> bytes:
    """A message as its producer would publish it: EventBridge's envelope on SQS (what a rule
    targeting the queue delivers), a plain ``{"id", "type", ...}`` document elsewhere."""
    if kind == "sqs":
        return orjson.dumps({
            "version": "0", "id": ref, "detail-type": event_type, "source": "test.orders",
            "account": "123456789012", "time": "2026-12-04T20:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"ref": ref, "amount": amount},
        })
    return orjson.dumps({"id": ref, "type": event_type, "ref": ref, "amount": amount})


class MotoServer:
    """``moto_server`` in a subprocess: SQS over real HTTP, as boto3 talks to AWS."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **AWS_ENV}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while reachable(self.url) is not None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto's server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Kit:
    """One broker's queue for one test."""

    kind = ""

    async def create(self) -> None: ...
    async def publish(self, bodies: Sequence[bytes]) -> None: ...
    async def unacked(self) -> int: ...
    async def delete(self) -> None: ...

    def source(self, **options: Any) -> queue_sources.QueueSource:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """What ``tests/queue/apps/orders.py`` reads to declare this source in a subprocess."""
        raise NotImplementedError


class RedisKit(Kit):
    kind = "redis"

    def __init__(self) -> None:
        self.stream = unique("solo_test")
        self.group = unique("grp")
        self.consumer = unique("c")

    async def _client(self) -> Any:
        import redis.asyncio as aioredis

        return aioredis.from_url(REDIS_URL)

    async def create(self) -> None:
        r = await self._client()
        # the stream is the user's: it exists before solo-os reads it
        await r.xadd(self.stream, {"data": b"{}", "seed": b"1"})
        await r.xtrim(self.stream, maxlen=0)
        await r.aclose()

    async def publish(self, bodies: Sequence[bytes]) -> None:
        r = await self._client()
        for i in range(0, len(bodies), 1000):
            pipe = r.pipeline(transaction=False)
            for body in bodies[i:i + 1000]:
                pipe.xadd(self.stream, {"data": body})
            await pipe.execute()
        await r.aclose()

    async def unacked(self) -> int:
        r = await self._client()
        try:
            groups = await r.xinfo_groups(self.stream)
        finally:
            await r.aclose()
        for g in groups:
            if g["name"].decode() == self.group:
                return int(g["pending"]) + int(g.get("lag") or 0)
        return -1  # the group was never created: nothing was read

    async def delete(self) -> None:
        r = await self._client()
        await r.delete(self.stream)
        await r.aclose()

    def source(self, **options: Any) -> queue_sources.QueueSource:
        return sources.redis_stream(
            REDIS_URL, self.stream, group=self.group, consumer=self.consumer, **options
        )

    def env(self) -> dict[str, str]:
        return {"Q_REDIS_STREAM": self.stream, "Q_REDIS_GROUP": self.group, "Q_REDIS_CONSUMER": self.consumer}


class RabbitKit(Kit):
    kind = "rabbitmq"

    def __init__(self) -> None:
        self.queue = unique("solo_test")

    async def _channel(self) -> tuple[Any, Any]:
        import aio_pika

        conn = await aio_pika.connect(RABBIT_URL)
        return conn, await conn.channel()

    async def create(self) -> None:
        conn, ch = await self._channel()
        await ch.declare_queue(self.queue, durable=True)
        await conn.close()

    async def publish(self, bodies: Sequence[bytes]) -> None:
        import aio_pika

        conn, ch = await self._channel()
        for i in range(0, len(bodies), 500):
            await asyncio.gather(*(
                ch.default_exchange.publish(aio_pika.Message(body=b), routing_key=self.queue)
                for b in bodies[i:i + 500]
            ))
        await conn.close()

    async def unacked(self) -> int:
        """Ready messages; unacknowledged ones count only once their consumer is gone (they
        go back to the queue), so call this after the consumer stopped."""
        conn, ch = await self._channel()
        try:
            q = await ch.declare_queue(self.queue, passive=True)
            return int(q.declaration_result.message_count or 0)
        finally:
            await conn.close()

    async def delete(self) -> None:
        conn, ch = await self._channel()
        await ch.queue_delete(self.queue)
        await conn.close()

    def source(self, **options: Any) -> queue_sources.QueueSource:
        return sources.rabbitmq(RABBIT_URL, self.queue, **options)

    def env(self) -> dict[str, str]:
        return {"Q_RABBIT_QUEUE": self.queue}


class NatsKit(Kit):
    kind = "nats"

    def __init__(self) -> None:
        self.stream = unique("SOLO_TEST").upper()
        self.subject = f"{self.stream.lower()}.orders"
        self.durable = unique("dur")

    async def _js(self) -> tuple[Any, Any]:
        import nats

        nc = await nats.connect(NATS_URL)
        return nc, nc.jetstream()

    async def create(self) -> None:
        nc, js = await self._js()
        await js.add_stream(name=self.stream, subjects=[f"{self.stream.lower()}.>"])
        await nc.close()

    async def publish(self, bodies: Sequence[bytes]) -> None:
        nc, js = await self._js()
        for i in range(0, len(bodies), 500):
            await asyncio.gather(*(js.publish(self.subject, b) for b in bodies[i:i + 500]))
        await nc.close()

    async def unacked(self) -> int:
        nc, js = await self._js()
        try:
            info = await js.consumer_info(self.stream, self.durable)
        finally:
            await nc.close()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def delete(self) -> None:
        nc, js = await self._js()
        try:
            await js.delete_stream(self.stream)
        finally:
            await nc.close()

    def source(self, **options: Any) -> queue_sources.QueueSource:
        return sources.nats(NATS_URL, self.stream, subject=self.subject, durable=self.durable, **options)

    def env(self) -> dict[str, str]:
        return {"Q_NATS_STREAM": self.stream, "Q_NATS_SUBJECT": self.subject, "Q_NATS_DURABLE": self.durable}


class SqsKit(Kit):
    kind = "sqs"

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.name = unique("solo_test")
        self.client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("sqs", endpoint_url=endpoint)
        self.queue_url = ""
        self._pool = concurrent.futures.ThreadPoolExecutor(8)

    async def _run(self, fn: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(**kwargs))

    async def create(self) -> None:
        made = await self._run(self.client.create_queue, QueueName=self.name)
        self.queue_url = made["QueueUrl"]

    async def publish(self, bodies: Sequence[bytes]) -> None:
        chunks = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]
        await asyncio.gather(*(
            self._run(
                self.client.send_message_batch, QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": b.decode()} for i, b in enumerate(chunk)],
            )
            for chunk in chunks
        ))

    async def unacked(self) -> int:
        got = await self._run(
            self.client.get_queue_attributes, QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        a = got["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    async def delete(self) -> None:
        await self._run(self.client.delete_queue, QueueUrl=self.queue_url)
        self._pool.shutdown(wait=False)

    def source(self, **options: Any) -> queue_sources.QueueSource:
        return sources.sqs(self.queue_url, endpoint_url=self.endpoint, region="us-east-1", **options)

    def env(self) -> dict[str, str]:
        # moto's server can hand one message to two concurrent receives (real SQS does not),
        # making the first receipt handle stale: one receive at a time against moto
        return {
            "Q_SQS_URL": self.queue_url, "Q_SQS_ENDPOINT": self.endpoint, "Q_SQS_RECEIVERS": "1",
            **AWS_ENV,
        }
