"""AWS Lambda entry point: the webhook ingress behind a Lambda function URL, through Mangum.

Set the function's handler (or the container image's command) to
``solo_os.aws_lambda.handler`` and its environment like any other deployment:
``SOLO_OS_APP`` (``/var/task/app.py`` or ``module:attr``), ``DATABASE_URL`` and the sources'
secrets (``aws-sm:ARN`` references are resolved by solo-os and re-read after their TTL).

The first invocation of a container loads the app, resolves its secrets, checks that the
database schema is current (migrations run elsewhere: ``solo-os db upgrade``, see
docs/deploy.md) and starts the ingress role once; later invocations reuse all of it, on the
same event loop. Only the ingress runs here: executions are claimed by the worker service.
If the start fails (the store unreachable, a schema behind, a secret missing) the invocation
answers ``503 {"error": "unavailable"}`` so the provider retries, and the next invocation
tries to start again.

``DATABASE_URL``, ``PGPASSWORD`` and ``SOLO_OS_ADMIN_TOKEN`` may hold a secret reference
(``aws-sm:...``, ``file:...``, ...): it is resolved once per container, since Lambda has no
native way to put a Secrets Manager value into an environment variable.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

from solo_os import _loader, config, errors
from solo_os import secret_sources as secrets
from solo_os.observability import logs as slog
from solo_os.runtime import runtime as runtime_mod

log = structlog.get_logger("solo_os.aws_lambda")

RESOLVED_AT_START = ("DATABASE_URL", "PGPASSWORD", "SOLO_OS_ADMIN_TOKEN")
_UNAVAILABLE = {
    "statusCode": 503,
    "headers": {"content-type": "application/json", "retry-after": "5"},
    "body": '{"error": "unavailable"}',
    "isBase64Encoded": False,
}


class Container:
    """What one Lambda execution environment keeps between invocations."""

    def __init__(self) -> None:
        from mangum import Mangum  # the 'aws' extra; imported here so the module loads without it

        resolve_references(os.environ, RESOLVED_AT_START)
        target = os.environ.get("SOLO_OS_APP", "")
        if not target:
            raise errors.ConfigError("SOLO_OS_APP: set it to the app (path/to/app.py or module:attr)")
        application = _loader.load_app(target)
        settings = application.settings
        slog.configure(settings.log_level, settings.log_format, application.service)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs each request on the current loop
        self.runtime = runtime_mod.Runtime(application, roles=("serve",), migrate=False, env=config.environ())
        try:
            self.loop.run_until_complete(self.runtime.start())
        except BaseException:
            self.close()
            raise
        self.adapter = Mangum(self.runtime.asgi(lifespan=False), lifespan="off")
        log.info("lambda.started", service=application.service)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.adapter(event, context)
        return result

    def close(self) -> None:
        """Stop the runtime and close the loop (tests; a SIGTERM from the Lambda runtime)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.run_until_complete(self.runtime.stop())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            self.loop.close()


_container: Container | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler: ``solo_os.aws_lambda.handler``."""
    global _container
    if _container is None:
        try:
            _container = Container()
        except (errors.ConfigError, errors.StoreError) as exc:
            problems = exc.problems if isinstance(exc, errors.ConfigError) else [str(exc)]
            log.error("lambda.start_failed", error_type=type(exc).__name__, problems=problems)
            return dict(_UNAVAILABLE)
    return _container(event, context)


def shutdown() -> None:
    """Release the container's runtime (tests; the Lambda runtime's SIGTERM)."""
    global _container
    if _container is not None:
        try:
            _container.close()
        finally:
            _container = None


def resolve_references(
    environ: MutableMapping[str, str],
    names: tuple[str, ...],
    resolve: Callable[[str, Mapping[str, str]], tuple[str, ...]] = secrets.resolve,
) -> None:
    """Replace each of ``names`` whose value is a secret reference by the secret it names."""
    for name in names:
        value = environ.get(name, "")
        if value and secrets.is_reference(value):
            found = resolve(name, environ)
            if len(found) != 1:
                raise errors.ConfigError(f"{name}: the reference must name exactly one value")
            environ[name] = found[0]
            slog.redactor.add(found[0])


__all__ = ["Container", "handler", "resolve_references", "shutdown"]
