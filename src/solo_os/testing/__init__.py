"""Test your handlers: the app in-process, signed deliveries, a test clock, assertions.

Also a pytest plugin (``-p solo_os.testing``, or loaded automatically through its
``pytest11`` entry point) providing the ``solo`` fixture::

    async def test_fulfil(solo):
        posted = await solo.client.send("billing", "invoice.paid", invoice)
        assert posted.status == "accepted"
        await solo.drain()
        await solo.assert_succeeded("fulfil", times=1)

Outside pytest, ``async with solo_os.testing.run(app) as solo: ...`` does the same.
See ``docs/testing.md``.
"""

from solo_os.testing._client import Delivery, DeliveryClient, Posted
from solo_os.testing._clock import Clock
from solo_os.testing._drive import DrainTimeout
from solo_os.testing._harness import Solo, run
from solo_os.testing._logs import capture_logs
from solo_os.testing._settings import generate_secret, isolated_settings, secrets_for
from solo_os.testing.plugin import (
    pytest_addoption,
    solo,
    solo_app,
    solo_clock,
    solo_database_url,
    solo_databases,
    solo_env,
    solo_settings,
)

__all__ = [
    "Clock",
    "Delivery",
    "DeliveryClient",
    "DrainTimeout",
    "Posted",
    "Solo",
    "capture_logs",
    "generate_secret",
    "isolated_settings",
    "pytest_addoption",
    "run",
    "secrets_for",
    "solo",
    "solo_app",
    "solo_clock",
    "solo_database_url",
    "solo_databases",
    "solo_env",
    "solo_settings",
]
