"""Fixtures for the queue-fed sources' tests: a uniquely named queue on a real broker, per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.queue import _brokers

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(problem: str | None, what: str) -> None:
    """Skip outside CI, fail under CI=true, when a broker is missing."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {what} is unreachable: {problem}")
    pytest.skip(f"{what} is unreachable ({problem}); set CI=true to require it")


@pytest.fixture(scope="session")
def moto_sqs() -> Iterator[str]:
    """moto's SQS in server mode (a subprocess on a free port): its endpoint URL."""
    for key, value in _brokers.AWS_ENV.items():
        os.environ.setdefault(key, value)
    try:
        server = _brokers.MotoServer()
    except Exception as exc:  # moto[server] missing or not starting
        require(f"{type(exc).__name__}: {exc}", "moto's SQS server")
        raise
    try:
        yield server.url
    finally:
        server.stop()


MakeKit = Callable[[str], _brokers.Kit]


@pytest.fixture
async def make_kit(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[str], object]]:
    """``await make_kit(kind)``: a new queue of that broker, deleted after the test."""
    made: list[_brokers.Kit] = []

    async def make(kind: str) -> _brokers.Kit:
        kit: _brokers.Kit
        if kind == "sqs":
            kit = _brokers.SqsKit(request.getfixturevalue("moto_sqs"))
        elif kind == "redis":
            require(_brokers.reachable(_brokers.REDIS_URL), "Redis")
            kit = _brokers.RedisKit()
        elif kind == "rabbitmq":
            require(_brokers.reachable(_brokers.RABBIT_URL), "RabbitMQ")
            kit = _brokers.RabbitKit()
        else:
            require(_brokers.reachable(_brokers.NATS_URL), "NATS")
            kit = _brokers.NatsKit()
        await kit.create()
        made.append(kit)
        return kit

    yield make
    for kit in made:
        try:
            await kit.delete()
        except Exception as exc:  # cleanup must not hide the test's own result
            print(f"cleanup of {kit.kind} failed: {exc}")
