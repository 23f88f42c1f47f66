"""docs/how-to/workflows.md as a test: its app and its two tests, run as written (SQLite)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "workflows.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _namespace() -> dict[str, Any]:
    app_code, test_code = _blocks()[:2]
    ns: dict[str, Any] = {"__name__": "workflows_howto"}
    exec(compile(app_code + "\n" + test_code, str(DOC), "exec"), ns)  # noqa: S102 - our own doc
    return ns


async def test_the_trial_reminder_flow_of_the_how_to() -> None:
    await _namespace()["test_trial_reminder_and_cancel"]()


async def test_the_checkout_payment_flow_of_the_how_to() -> None:
    await _namespace()["test_checkout_payment"]()
