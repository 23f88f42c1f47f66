"""A test app with one queue-fed source per broker, declared from ``Q_*`` variables (so the
same file runs in ``solo-os consume`` subprocesses); ``make_app`` records handler runs."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from solo_os import App, sources
from tests.queue import _brokers


class Order(BaseModel):
    model_config = ConfigDict(extra="allow")

    ref: str
    amount: int = Field(ge=0)


def declare_sources(app: App, env: Mapping[str, str], **options: Any) -> list[str]:
    """The sources named by ``env``: sqs, redis, rabbitmq, nats (each when its variables are set)."""
    names = []
    if env.get("Q_SQS_URL"):
        app.source("sqs", sources.sqs(
            env["Q_SQS_URL"], region="us-east-1", endpoint_url=env["Q_SQS_ENDPOINT"],
            visibility_timeout=int(env.get("Q_SQS_VISIBILITY", "30")),
            receivers=int(env.get("Q_SQS_RECEIVERS", "4")), **options,
        ))
        names.append("sqs")
    if env.get("Q_REDIS_STREAM"):
        app.source("redis", sources.redis_stream(
            _brokers.REDIS_URL, env["Q_REDIS_STREAM"], group=env["Q_REDIS_GROUP"],
            consumer=env["Q_REDIS_CONSUMER"], **options,
        ))
        names.append("redis")
    if env.get("Q_RABBIT_QUEUE"):
        app.source("rabbitmq", sources.rabbitmq(_brokers.RABBIT_URL, env["Q_RABBIT_QUEUE"], **options))
        names.append("rabbitmq")
    if env.get("Q_NATS_STREAM"):
        app.source("nats", sources.nats(
            _brokers.NATS_URL, env["Q_NATS_STREAM"], subject=env["Q_NATS_SUBJECT"],
            durable=env["Q_NATS_DURABLE"], ack_wait_seconds=float(env.get("Q_NATS_ACK_WAIT", "60")),
            **options,
        ))
        names.append("nats")
    return names


def make_app(env: Mapping[str, str], runs: Counter[tuple[str, str]] | None = None, **options: Any) -> App:
    app = App(service="orders")
    for name in declare_sources(app, env, **options):

        async def handle(event: Order, ctx: Any, _source: str = name) -> None:
            if runs is not None:
                runs[(_source, event.ref)] += 1

        app.on(name, "order.created", schema=Order, name=f"{name}-record")(handle)
    return app


app = make_app(os.environ)
