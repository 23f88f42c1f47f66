"""Queue-fed sources as declared: how a message is typed, keyed and unwrapped (SPEC section 2),
what is refused at declaration, and that nothing imports a broker client early."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from solo_os import App, errors, sources
from solo_os.sources import queue as queue_sources
from solo_os.sources._base import DictHeaders

NO_HEADERS = DictHeaders({})
ENVELOPE = {
    "version": "0", "id": "eb-1", "detail-type": "invoice.paid", "source": "aws.partner/stripe.com",
    "detail": {"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}},
}


def _source(**options: object) -> queue_sources.QueueSource:
    return sources.redis_stream("redis://127.0.0.1:6379/0", "events", **options)  # type: ignore[arg-type]


def test_eventbridge_envelope_defaults_to_detail_type_id_and_detail() -> None:
    s = _source()
    assert s.event_type(NO_HEADERS, ENVELOPE) == "invoice.paid"
    assert s.idempotency_key(NO_HEADERS, ENVELOPE) == "eb-1"
    assert s.payload(ENVELOPE) == ENVELOPE["detail"]


def test_plain_message_defaults_to_type_id_and_the_whole_message() -> None:
    s = _source()
    doc = {"id": "m-1", "type": "order.created", "total": 3}
    assert (s.event_type(NO_HEADERS, doc), s.idempotency_key(NO_HEADERS, doc)) == ("order.created", "m-1")
    assert s.payload(doc) == doc


def test_configured_fields_are_dotted_paths() -> None:
    s = _source(type_field="detail.type", key_field="detail.id", payload="detail.data.object")
    assert s.event_type(NO_HEADERS, ENVELOPE) == "invoice.paid"
    assert s.idempotency_key(NO_HEADERS, ENVELOPE) == "evt_1"
    assert s.payload(ENVELOPE) == {"id": "in_1"}


def test_without_a_key_in_the_message_the_broker_message_id_keys_it() -> None:
    s = _source()
    headers = DictHeaders({queue_sources.MESSAGE_ID_HEADER: "1700000000000-0"})
    assert s.idempotency_key(headers, {"type": "x"}) == "1700000000000-0"
    assert s.idempotency_key(NO_HEADERS, {"type": "x"}) is None  # then the body's digest


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (sources.sqs, {"queue_url": "sqs://nope"}),
        (sources.redis_stream, {"url": "http://x", "stream": "s"}),
        (sources.rabbitmq, {"url": "amqp://x", "queue": "bad name"}),
        (sources.nats, {"url": "nats://x", "stream": "S", "durable": ""}),
        (sources.redis_stream, {"url": "redis://x", "stream": "s", "batch_size": 0}),
        (sources.redis_stream, {"url": "redis://x", "stream": "s", "key_field": "a..b"}),
    ],
)
def test_bad_declarations_are_refused(factory: object, kwargs: dict[str, object]) -> None:
    with pytest.raises(errors.ConfigError):
        factory(**kwargs)  # type: ignore[operator]


def test_credentials_never_show_in_the_location() -> None:
    s = sources.rabbitmq("amqp://app:s3cret@mq.internal:5672/vhost", "orders")
    assert "s3cret" not in s.location() and "s3cret" not in repr(s)
    assert sources.sqs("https://sqs.eu-west-1.amazonaws.com/1/q").region == "eu-west-1"


def test_a_queue_fed_source_needs_no_secret_and_has_no_http_route() -> None:
    app = App(service="t")
    app.source("orders", sources.nats("nats://127.0.0.1:4222", "ORDERS"))
    assert app.prepare({"DATABASE_URL": "sqlite:///x.db"}) == []  # no unverified-source warning
    assert not app.sources["orders"].http
    body, _ = sources.nats("nats://x", "S").compose("a.b", {"id": 1}, 0)
    assert orjson.loads(body) == {"id": 1, "type": "a.b"}


def test_importing_solo_os_and_the_sources_imports_no_broker_client() -> None:
    code = (
        "import sys, solo_os.sources, solo_os.cli\n"
        "bad = [m for m in ('boto3', 'redis', 'aio_pika', 'nats') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
