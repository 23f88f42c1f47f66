"""The app under test: a fresh copy per test, its runtime, and an HTTP client without sockets."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from solo_os import App, records
from solo_os import runtime as runtime_mod
from solo_os import store as store_mod

APP_FILE = Path(__file__).resolve().parents[1] / "app.py"
SECRETS = {
    "BILLING_WEBHOOK_SECRET": "test-billing-secret-0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_test0123456789abcdef",
}


def load_app() -> Any:
    """A fresh copy of app.py (its settings are read from this test's environment)."""
    spec = importlib.util.spec_from_file_location(f"app_under_test_{uuid.uuid4().hex}", APP_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


@dataclass
class Harness:
    app: App
    runtime: runtime_mod.Runtime
    client: httpx.AsyncClient

    @property
    def store(self) -> store_mod.Store:
        assert self.runtime.store is not None
        return self.runtime.store

    def delivery(self, source: str, event_type: str, data: Any) -> tuple[bytes, dict[str, str]]:
        """A delivery as the provider sends it, signed with the test secret."""
        return self.app.sources[source].build_delivery(event_type, data, time.time())

    async def post(self, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(f"/webhooks/{source}", content=body, headers=headers)

    async def finished(self, event_id: str, timeout: float = 20.0) -> list[records.Execution]:
        """The event's executions, once none of them is pending or running."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.store.list_executions(store_mod.Filters(limit=0), event_id=uuid.UUID(event_id))
            if found and all(x.status not in ("pending", "running") for x in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"executions of {event_id} did not finish: {found}")
            await asyncio.sleep(0.05)
