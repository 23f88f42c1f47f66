"""The billing example's tests, written with solo-os's pytest plugin.

The plugin (``solo_os.testing``) is loaded by its entry point once solo-os is installed;
run them with ``pytest examples/billing/tests``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from solo_os import App

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the example's folder: `import app`

import app as billing


@pytest.fixture
def solo_app() -> App:
    return billing.app


@pytest.fixture
def module() -> ModuleType:
    return billing


@pytest.fixture(autouse=True)
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test writes fulfilments to its own ledger file."""
    path = tmp_path / "fulfilments.db"
    monkeypatch.setenv("FULFILMENTS_DB", str(path))
    return path
