"""The billing example's own tests (written with the plugin) pass, run as a user runs them."""

from __future__ import annotations

import re

from tests.kit import _support


def test_the_billing_examples_tests_pass() -> None:
    r = _support.pytest_in(_support.ROOT / "examples" / "billing" / "tests", "-q", cwd=_support.ROOT)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert re.search(r"\b5 passed\b", r.stdout), r.stdout[-2000:]
