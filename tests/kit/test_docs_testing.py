"""docs/testing.md's examples are one project; this runs its tests as a user would."""

from __future__ import annotations

import re
from pathlib import Path

from tests.kit import _support

GUIDE = _support.ROOT / "docs" / "testing.md"
_BLOCK = re.compile(r"<!-- docs-test-file: (?P<name>[\w./-]+) -->\s*```\w*\n(?P<code>.*?)```", re.S)


def project_files() -> dict[str, str]:
    """Every marked block, concatenated per file name in the order of the guide."""
    files: dict[str, str] = {}
    for m in _BLOCK.finditer(GUIDE.read_text()):
        files[m["name"]] = files.get(m["name"], "") + m["code"] + "\n"
    return files


def test_the_guide_is_a_whole_project() -> None:
    files = project_files()
    assert set(files) == {"pyproject.toml", "shop.py", "conftest.py", "test_shop.py"}
    assert len(re.findall(r"^async def test_", files["test_shop.py"], re.M)) == 9


def test_the_guides_examples_pass(tmp_path: Path) -> None:
    for name, code in project_files().items():
        (tmp_path / name).write_text(code)
    r = _support.pytest_in(tmp_path, "-q", "-W", "error", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert re.search(r"\b9 passed\b", r.stdout), r.stdout[-2000:]
