"""``consume``: the queue-fed sources' consumer alone (scale-out, like ``worker``)."""

from __future__ import annotations

from typing import Annotated

import typer

from solo_os import errors
from solo_os.cli import _common
from solo_os.runtime import consumer as consumer_mod
from solo_os.runtime import runtime as runtime_mod


def consume(
    app_arg: _common.AppArg = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, envvar="SOLO_OS_METRICS_PORT", help="serve /metrics on this port"),
    ] = None,
    app: _common.AppOpt = None,
) -> None:
    """Only the consumer: reads the app's queue-fed sources (SQS, Redis, RabbitMQ, NATS) into the store."""
    app = app_arg or app
    with _common.friendly_errors():
        application = _common.load_app(app)
        application.prepare()
        if not consumer_mod.queue_sources_of(application):
            raise errors.ConfigError(
                "the app has no queue-fed source (sources.sqs, redis_stream, rabbitmq or nats)"
            )
        _common.check_database(application.settings.database_url, create=False)
        if metrics_port:
            application._settings = application.settings.model_copy(update={"metrics_port": metrics_port})
        _common.setup_logging(application.settings, application.service)
        rt = runtime_mod.Runtime(application, roles=("consume",))
        rt.prepare()
        _common.run_async(rt.run_worker())
