"""The docs' examples run: the quickstart's app loads and processes a delivery."""

from __future__ import annotations

import re
from pathlib import Path

from solo_os import _loader
from solo_os import store as store_mod
from tests import helpers

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _block(path: Path, marker: str) -> str:
    text = path.read_text()
    m = re.search(rf"<!-- docs-test: {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"no '{marker}' example in {path}"
    return m.group(1)


async def test_quickstart_app_runs(tmp_path: Path, sqlite_url: str) -> None:
    source = _block(DOCS / "quickstart.md", "app")
    (tmp_path / "quickstart_app.py").write_text(source)
    app = _loader.load_app(str(tmp_path / "quickstart_app.py"))
    async with helpers.running(app, sqlite_url) as h:
        r = await h.post("billing", helpers.invoice(), key="evt_1")
        assert r.json()["status"] == "accepted"
        again = await h.post("billing", helpers.invoice(), key="evt_1")
        assert again.json()["status"] == "duplicate"

        async def done() -> bool:
            xs = await h.store.list_executions(store_mod.Filters())
            return bool(xs) and xs[0].status == "succeeded"

        await helpers.eventually(done)
        [x] = await h.store.list_executions(store_mod.Filters())
        steps = await h.store.load_steps(x.id)
    assert list(steps) == ["send-receipt"]


def test_readme_example_is_a_valid_app(tmp_path: Path) -> None:
    readme = (DOCS.parent / "README.md").read_text()
    m = re.search(r"```python\n(.*?)```", readme, re.S)
    assert m, "the README shows an app"
    (tmp_path / "readme_app.py").write_text(m.group(1))
    app = _loader.load_app(str(tmp_path / "readme_app.py"))
    app.prepare({"STRIPE_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    assert set(app.handlers) == {"fulfil", "daily-reconciliation"}
    assert set(app.schedules) == {"daily-reconciliation"}
