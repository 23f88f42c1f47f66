"""Queue-fed sources (SPEC section 2): SQS, Redis Streams, RabbitMQ and NATS JetStream.

These sources have no HTTP route: the ``consume`` role (``runtime/consumer.py``) reads their
broker and hands each message here to be typed, keyed and unwrapped, exactly as a webhook
delivery is. The broker authenticates the producer (credentials in the URL or the environment),
so there is no signature to check and no secret to configure.

Defaults follow Amazon EventBridge, the envelope Stripe and Shopify deliver through: a message
with ``detail-type`` and ``detail`` is typed by ``detail-type``, keyed by ``id`` and hands
``detail`` to the schema; any other message is typed by ``type`` and keyed by ``id``, and the
whole message is the payload. ``type_field=``, ``key_field=`` and ``payload=`` change that
(dotted paths). Without a key in the message, the broker's message id keys it (SQS
``MessageId``, the Redis entry id, RabbitMQ's ``message_id``, NATS ``Nats-Msg-Id`` or the
stream sequence), else the digest of the body.

The brokers' clients are optional extras (``solo-os[sqs]``, ``[redis]``, ``[rabbitmq]``,
``[nats]``) and are imported only by the consumer, never here.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

from solo_os import errors
from solo_os.sources import _base

#: The header that carries the broker's own message id to ``idempotency_key``.
MESSAGE_ID_HEADER = "x-solo-os-message-id"
EVENTBRIDGE_TYPE = "detail-type"
EVENTBRIDGE_PAYLOAD = "detail"
_NAME = re.compile(r"[A-Za-z0-9_.:*>$-]{1,255}")
_DEFAULT_BATCH = 100


def _eventbridge(document: Any) -> bool:
    return isinstance(document, dict) and EVENTBRIDGE_TYPE in document and EVENTBRIDGE_PAYLOAD in document


class QueueSource(_base.Source):
    """What the four queue-fed sources share: mapping a message to an event, consumer options.

    ``batch_size``: messages pulled and stored per transaction. ``max_pending``: backpressure,
    the consumer pauses while the handlers of this source have more pending executions than
    this (default ``SOLO_OS_CONSUME_MAX_PENDING``, 10,000).
    """

    kind: ClassVar[str] = "queue"
    broker: ClassVar[str] = ""
    extra: ClassVar[str] = ""  # the pip extra that installs the client
    client_module: ClassVar[str] = ""
    http: ClassVar[bool] = False

    def __init__(
        self,
        *,
        type_field: str | None = None,
        key_field: str | None = None,
        payload: str | None = None,
        batch_size: int = _DEFAULT_BATCH,
        max_pending: int | None = None,
    ) -> None:
        super().__init__(secret_env=None, verify=True, payload=payload)
        for what, path in (("type_field", type_field), ("key_field", key_field)):
            if path is not None and not _base.valid_path(path):
                raise errors.ConfigError(f"{what}={path!r}: give a field name or a dotted path")
        _positive(batch_size, "batch_size", 1, 1000)
        if max_pending is not None:
            _positive(max_pending, "max_pending", 1, 10_000_000)
        self.type_field = type_field
        self.key_field = key_field
        self.batch_size = batch_size
        self.max_pending = max_pending

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '?'} {self.location()}>"

    def location(self) -> str:
        """Where the messages come from, for logs and ``solo-os sources`` (no credentials)."""
        raise NotImplementedError

    # --- configuration -------------------------------------------------------------------

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        """No secret: the broker authenticates. The client must be installed."""
        self.name = name
        if importlib.util.find_spec(self.client_module) is None:
            return [
                f"source {name!r} reads {self.broker} with the {self.client_module!r} package,"
                f" which is not installed: pip install 'solo-os[{self.extra}]'"
            ]
        return []

    def variables(self) -> dict[str, str]:
        return {}

    # --- per message -----------------------------------------------------------------------

    def authenticate(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raise errors.SignatureError("queue_fed_source")  # never reached over HTTP (no route)

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raise errors.SignatureError("queue_fed_source")

    def decode(self, headers: _base.Headers, body: bytes) -> Any:
        return _base.Source.decode(self, _base.DictHeaders({}), body)  # always JSON

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        if self.type_field is not None:
            path = self.type_field
        else:
            path = EVENTBRIDGE_TYPE if _eventbridge(document) else "type"
        return _base.type_text(_base.field(document, path), f"the field {path!r}")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        key = _base.key_text(_base.field(document, self.key_field or "id"))
        if key is not None:
            return key
        return _base.header_value(headers, MESSAGE_ID_HEADER)

    def payload(self, document: Any) -> Any:
        if self.payload_path is not None:
            return _base.field(document, self.payload_path)
        return document[EVENTBRIDGE_PAYLOAD] if _eventbridge(document) else document

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        """A message as a producer would publish it: ``data`` with its type in the type field."""
        path = self.type_field or "type"
        document = _base.with_field(data, path, event_type)
        return _base.json_body(document), {}

    def sign(self, body: bytes, now: float, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        return {}


class SQS(QueueSource):
    broker = "Amazon SQS"
    extra = "sqs"
    client_module = "boto3"

    def __init__(
        self, *, queue_url: str, region: str | None = None, endpoint_url: str | None = None,
        wait_seconds: int = 1, visibility_timeout: int | None = None, receivers: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        _positive(receivers, "receivers", 1, 10)
        self.receivers = receivers  # ReceiveMessage calls at once (10 messages each at most)
        if not isinstance(queue_url, str) or not queue_url.startswith(("https://", "http://")):
            raise errors.ConfigError(f"queue_url={queue_url!r}: give the queue's URL (https://sqs...)")
        _positive(wait_seconds, "wait_seconds", 0, 20)
        if visibility_timeout is not None:
            _positive(visibility_timeout, "visibility_timeout", 0, 43_200)
        self.queue_url = queue_url
        self.region = region or _region_of(queue_url)
        self.endpoint_url = endpoint_url
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout

    def location(self) -> str:
        return _strip_credentials(self.queue_url)


class RedisStream(QueueSource):
    broker = "Redis Streams"
    extra = "redis"
    client_module = "redis"

    def __init__(
        self, *, url: str, stream: str, group: str = "solo-os", field: str = "data",
        consumer: str | None = None, claim_idle_seconds: float = 60.0, **options: Any,
    ) -> None:
        super().__init__(**options)
        _url(url, ("redis", "rediss", "unix"), "url")
        for what, value in (("stream", stream), ("group", group), ("field", field)):
            _name(value, what)
        if consumer is not None:
            _name(consumer, "consumer")
        if isinstance(claim_idle_seconds, bool) or not isinstance(claim_idle_seconds, int | float) or (
            claim_idle_seconds <= 0
        ):
            raise errors.ConfigError("claim_idle_seconds must be a positive number of seconds")
        self.url = url
        self.stream = stream
        self.group = group
        self.field_name = field
        # A stable consumer name: a restarted process reads back what it had not acknowledged.
        self.consumer = consumer or socket.gethostname() or "solo-os"
        self.claim_idle_seconds = float(claim_idle_seconds)

    def location(self) -> str:
        return f"{_strip_credentials(self.url)} stream={self.stream} group={self.group}"


class RabbitMQ(QueueSource):
    broker = "RabbitMQ"
    extra = "rabbitmq"
    client_module = "aio_pika"

    def __init__(self, *, url: str, queue: str, **options: Any) -> None:
        super().__init__(**options)
        _url(url, ("amqp", "amqps"), "url")
        _name(queue, "queue")
        self.url = url
        self.queue = queue

    def location(self) -> str:
        return f"{_strip_credentials(self.url)} queue={self.queue}"


class NATS(QueueSource):
    broker = "NATS JetStream"
    extra = "nats"
    client_module = "nats"

    def __init__(
        self, *, url: str, stream: str, subject: str | None = None, durable: str = "solo-os",
        ack_wait_seconds: float = 60.0, **options: Any,
    ) -> None:
        super().__init__(**options)
        _url(url, ("nats", "tls", "ws", "wss"), "url")
        _name(stream, "stream")
        _name(durable, "durable")
        if subject is not None:
            _name(subject, "subject")
        if isinstance(ack_wait_seconds, bool) or not isinstance(ack_wait_seconds, int | float) or (
            ack_wait_seconds <= 0
        ):
            raise errors.ConfigError("ack_wait_seconds must be a positive number of seconds")
        self.url = url
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.ack_wait_seconds = float(ack_wait_seconds)

    def location(self) -> str:
        return f"{_strip_credentials(self.url)} stream={self.stream} durable={self.durable}"


def sqs(
    queue_url: str, region: str | None = None, endpoint_url: str | None = None, **options: Any
) -> SQS:
    """Amazon SQS (``solo-os[sqs]``, boto3). EventBridge rules that target the queue deliver
    their envelope as the message body: typed by ``detail-type``, keyed by ``id``."""
    return SQS(queue_url=queue_url, region=region, endpoint_url=endpoint_url, **options)


def redis_stream(url: str, stream: str, group: str = "solo-os", **options: Any) -> RedisStream:
    """A Redis stream read through a consumer group (``solo-os[redis]``); the group is created at
    id ``0`` when missing. An entry carries the message JSON in its field ``data`` (``field=``)."""
    return RedisStream(url=url, stream=stream, group=group, **options)


def rabbitmq(url: str, queue: str, **options: Any) -> RabbitMQ:
    """A RabbitMQ queue (``solo-os[rabbitmq]``, aio-pika); the queue and its bindings must exist."""
    return RabbitMQ(url=url, queue=queue, **options)


def nats(
    url: str, stream: str, subject: str | None = None, durable: str = "solo-os", **options: Any
) -> NATS:
    """A NATS JetStream stream (``solo-os[nats]``, nats-py) through a durable pull consumer,
    created when missing (filtered on ``subject`` when given)."""
    return NATS(url=url, stream=stream, subject=subject, durable=durable, **options)


def _positive(value: Any, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.ConfigError(f"{what} must be a whole number from {low} to {high}, not {value!r}")


def _name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise errors.ConfigError(f"{what}={value!r}: not a valid name")


def _url(value: Any, schemes: tuple[str, ...], what: str) -> None:
    scheme = urllib.parse.urlsplit(value).scheme if isinstance(value, str) else ""
    if scheme not in schemes:
        raise errors.ConfigError(
            f"{what}: give a {' or '.join(s + '://' for s in schemes)} URL, not {_strip_credentials(value)!r}"
        )


def _strip_credentials(url: Any) -> str:
    """``url`` without its user and password (logs, errors, listings)."""
    if not isinstance(url, str):
        return repr(url)
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _region_of(queue_url: str) -> str | None:
    """``us-east-1`` from ``https://sqs.us-east-1.amazonaws.com/...``, else None."""
    host = urllib.parse.urlsplit(queue_url).hostname or ""
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "sqs" else None


__all__ = ["NATS", "SQS", "QueueSource", "RabbitMQ", "RedisStream", "nats", "rabbitmq", "redis_stream", "sqs"]
