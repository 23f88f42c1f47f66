"""The layer contracts in pyproject.toml hold (domain at the bottom, edges on top)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_lint_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    r = subprocess.run([str(ruff), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_types_are_strict_clean() -> None:
    mypy = Path(sys.executable).parent / "mypy"
    r = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in re.split(r"[|:]", layer)]


def _modules() -> list[str]:
    src = ROOT / "src"
    names = []
    for path in sorted((src / "solo_os").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_is_named_by_the_layers_contract() -> None:
    named = _layers()
    assert len(named) == len(set(named)), "a module is named by two layers"
    modules = _modules()
    assert "solo_os.core.retry" in modules and "solo_os.runtime.worker" in modules  # the walk works
    left_out = [
        m
        for m in modules
        if m != "solo_os"  # the root only re-exports, lazily
        and not any(m == n or m.startswith(n + ".") for n in named)  # named, or inside a named package
        and not any(n.startswith(m + ".") for n in named)  # a package whose modules are all placed
    ]
    assert left_out == [], f"add these to a layer in pyproject.toml: {left_out}"
    missing = [n for n in named if n not in modules]
    assert missing == [], f"layers name modules that do not exist: {missing}"


def test_core_imports_no_io_library() -> None:
    core = [m for m in _modules() if m.startswith("solo_os.core.")]
    assert len(core) >= 7
    code = (
        "import sys\n"
        f"for m in {core!r}: __import__(m)\n"
        "bad = ('sqlalchemy', 'asyncpg', 'httpx', 'starlette', 'structlog', 'uvicorn', 'fastapi',\n"
        "       'prometheus_client', 'opentelemetry')\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & set(bad)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
