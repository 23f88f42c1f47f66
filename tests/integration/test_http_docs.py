"""The example of docs/outbound-http.md runs, against a local server standing in for the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from solo_os import _loader
from solo_os import store as store_mod
from tests import helpers
from tests.apps.http_app import Target

DOC = Path(__file__).resolve().parents[2] / "docs" / "outbound-http.md"


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target().start()
    yield server
    server.stop()


async def test_the_outbound_http_example_runs(
    sqlite_url: str, target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = re.search(r"<!-- docs-test: app -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert m, "no example in docs/outbound-http.md"
    (tmp_path / "outbound_example.py").write_text(m.group(1))
    monkeypatch.setenv("PAYMENTS_API", target.url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_docs_example_key")
    app = _loader.load_app(str(tmp_path / "outbound_example.py"))
    assert app.rate_limits["stripe"].capacity == 5
    async with helpers.running(app, sqlite_url) as h:
        inv = helpers.invoice()
        await h.post("billing", inv, key="evt_paid")
        await h.post("billing", inv, key="evt_void", event_type="invoice.voided")

        async def done() -> bool:
            xs = await h.store.list_executions(store_mod.Filters())
            return len(xs) == 2 and {x.status for x in xs} == {"succeeded"}

        await helpers.eventually(done)
    (charge,) = target.requests("/v1/charges")
    assert charge.body == b"amount=4900&currency=eur"
    assert charge.headers["authorization"] == "Bearer sk_test_docs_example_key"
    assert charge.headers["x-correlation-id"] == "evt_paid"
    assert len(charge.headers["idempotency-key"]) == 36
    (note,) = target.requests("/v1/notes")
    assert note.body == f'{{"invoice":"{inv["id"]}"}}'.encode()
