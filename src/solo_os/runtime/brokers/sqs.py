"""Amazon SQS through boto3 (``solo-os[sqs]``): receives in parallel, deletes in batches of 10.

boto3 is synchronous, so its calls run on a small thread pool of this adapter's own (never the
loop's default executor, which runs the users' plain ``def`` handlers). A message stays
invisible for the queue's visibility timeout (or ``visibility_timeout=``) while its event is
stored; one not deleted by then (a crash, a store outage) is received again and is then a
duplicate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Sequence
from typing import Any

import structlog

from solo_os.runtime.brokers import _message
from solo_os.sources import queue as queue_sources

MAX_PER_CALL = 10  # SQS's limit for ReceiveMessage and DeleteMessageBatch
THREADS = 10
log = structlog.get_logger("solo_os.consumer")


class SQSBroker:
    def __init__(self, source: queue_sources.SQS) -> None:
        self.source = source
        self._client: Any = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def _call(self, method: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        fn = getattr(self._client, method)
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(**kwargs))
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, ...
            raise _message.BrokerError(f"SQS {method}: {exc}") from exc

    async def open(self) -> None:
        import boto3  # type: ignore[import-untyped]  # no stubs; the optional extra [sqs]
        import botocore.config  # type: ignore[import-untyped]

        region = self.source.region or os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION"
        ) or "us-east-1"
        config = botocore.config.Config(
            max_pool_connections=THREADS, retries={"max_attempts": 2, "mode": "standard"}
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="solo-os-sqs")
        self._client = boto3.session.Session().client(
            "sqs", region_name=region, endpoint_url=self.source.endpoint_url, config=config
        )
        # the queue must exist (it is the user's): fail early with the queue's own error
        await self._call("get_queue_attributes", QueueUrl=self.source.queue_url, AttributeNames=["QueueArn"])

    async def fetch(self, limit: int, wait: float) -> list[_message.Message]:
        calls = max(1, min(self.source.receivers, THREADS, -(-limit // MAX_PER_CALL)))
        options: dict[str, Any] = {
            "QueueUrl": self.source.queue_url,
            "MaxNumberOfMessages": MAX_PER_CALL,
            "WaitTimeSeconds": min(self.source.wait_seconds, max(0, int(wait))),
            "MessageAttributeNames": ["All"],
        }
        if self.source.visibility_timeout is not None:
            options["VisibilityTimeout"] = self.source.visibility_timeout
        answers = await asyncio.gather(*(self._call("receive_message", **options) for _ in range(calls)))
        out: list[_message.Message] = []
        for answer in answers:
            for m in answer.get("Messages", ()):
                attributes = {
                    k: v["StringValue"]
                    for k, v in (m.get("MessageAttributes") or {}).items()
                    if "StringValue" in v
                }
                out.append(
                    _message.Message(
                        body=m["Body"].encode("utf-8", "surrogatepass"),
                        message_id=m.get("MessageId"),
                        headers=_message.text_headers(attributes),
                        handle=m["ReceiptHandle"],
                    )
                )
        return out

    async def ack(self, messages: Sequence[_message.Message]) -> None:
        chunks = [messages[i:i + MAX_PER_CALL] for i in range(0, len(messages), MAX_PER_CALL)]
        answers = await asyncio.gather(
            *(
                self._call(
                    "delete_message_batch",
                    QueueUrl=self.source.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m.handle} for i, m in enumerate(chunk)],
                )
                for chunk in chunks
            )
        )
        failed = [f for answer in answers for f in answer.get("Failed", ())]
        if failed:
            # Typically a receipt handle made stale by a later receive of the same message:
            # that receive deletes it, or it comes again as a duplicate. Never a loss.
            log.warning(
                "consume.ack_failed", source=self.source.name, count=len(failed),
                code=failed[0].get("Code"),
            )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
