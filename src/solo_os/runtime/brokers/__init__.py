"""Broker adapters for the queue-fed sources: each reads one broker with its own client.

Every adapter has the same small face (``_message.Broker``): ``open`` (connect; create the
consumer group or durable consumer when missing), ``fetch`` (up to N messages, waiting at most
a while), ``ack`` (after their events are committed) and ``close``. The clients are imported in
``open``, so importing this package imports no broker library.
"""

from __future__ import annotations

from solo_os.runtime.brokers._message import Broker, BrokerError, Message
from solo_os.sources import queue as queue_sources


def for_source(source: queue_sources.QueueSource) -> Broker:
    """The adapter that reads ``source``'s broker."""
    if isinstance(source, queue_sources.SQS):
        from solo_os.runtime.brokers import sqs

        return sqs.SQSBroker(source)
    if isinstance(source, queue_sources.RedisStream):
        from solo_os.runtime.brokers import redis_stream

        return redis_stream.RedisStreamBroker(source)
    if isinstance(source, queue_sources.RabbitMQ):
        from solo_os.runtime.brokers import rabbitmq

        return rabbitmq.RabbitMQBroker(source)
    if isinstance(source, queue_sources.NATS):
        from solo_os.runtime.brokers import nats

        return nats.NATSBroker(source)
    raise TypeError(f"no broker adapter for {source!r}")


__all__ = ["Broker", "BrokerError", "Message", "for_source"]
