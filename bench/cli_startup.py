"""CPU that ``solo-os --help`` and ``--version`` cost, next to ``celery --help`` / ``--version``.

    .venv/bin/python bench/cli_startup.py [--runs 15]

Each command runs ``--runs`` times, alternating between the two tools so that both see the same
machine; the CPU time (user + system) of each child process comes from ``wait4``. It prints the
median and the best run of each, the ratio solo-os / Celery (the budget: at most 0.5), the
modules of the runtime that ``solo-os --help`` imported (there should be none), and the slowest
imports of the top-level CLI by ``python -X importtime``. Celery comes with
the ``bench`` dependency group. Both tools run from this interpreter's ``bin/``; whether their
bytecode is compiled matters as much as the imports (``scripts/dev.py`` compiles it), so the
script says which it measured. Results go to ``bench/results/cli_startup.json`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 0.5
HEAVY = (
    "sqlalchemy", "asyncpg", "aiosqlite", "uvicorn", "starlette", "fastapi", "httpx", "pydantic",
    "pydantic_settings", "prometheus_client", "opentelemetry", "structlog", "rich", "alembic",
)
PROBE = (
    "import sys\n"
    "from solo_os.cli import cli\n"
    "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
    f"print('\\nIMPORTED', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
)


def cpu_seconds(command: list[str]) -> float:
    """User + system CPU of one run of ``command`` (its output discarded)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def heavy_imports() -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("IMPORTED"))
    return list(json.loads(line.removeprefix("IMPORTED ").replace("'", '"')))


def import_times(top: int = 8) -> list[tuple[str, int]]:
    """``python -X importtime``: the slowest imports of the top-level CLI (cumulative µs)."""
    command = [sys.executable, "-X", "importtime", "-c", "import solo_os.cli"]
    err = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1])))
    return sorted(rows, key=lambda r: -r[1])[:top]


def bytecode_compiled() -> bool:
    """Whether the installed packages' bytecode is there (checked on Typer's main module)."""
    import importlib.util

    import typer.main

    return Path(importlib.util.cache_from_source(typer.main.__file__)).is_file()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    solo, celery = str(BIN / "solo-os"), str(BIN / "celery")
    if not Path(celery).exists():
        print(f"no {celery}: install the bench group (uv sync --group bench)", file=sys.stderr)
        return 2
    cases = {
        "--help": ([solo, "--help"], [celery, "--help"]),
        "--version": ([solo, "--version"], [celery, "--version"]),
    }
    for a, b in cases.values():  # warm the page cache (and any bytecode cache) first
        cpu_seconds(a)
        cpu_seconds(b)
    figures: dict[str, dict[str, float]] = {}
    for flag, (a, b) in cases.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            ours.append(cpu_seconds(a))
            theirs.append(cpu_seconds(b))
        figures[flag] = {
            "solo_os_median_s": statistics.median(ours),
            "solo_os_best_s": min(ours),
            "celery_median_s": statistics.median(theirs),
            "celery_best_s": min(theirs),
            "ratio": statistics.median(ours) / statistics.median(theirs),
        }
    imported = heavy_imports()
    compiled = bytecode_compiled()
    print(f"CPU per run, median (best) of {args.runs}; bytecode {'compiled' if compiled else 'NOT compiled'}")
    print(f"{'command':<12}{'solo-os':>18}{'celery':>18}{'ratio':>8}")
    ok = not imported
    for flag, f in figures.items():
        ok = ok and f["ratio"] <= BUDGET
        print(
            f"{flag:<12}{f['solo_os_median_s'] * 1000:>10.0f} ms ({f['solo_os_best_s'] * 1000:.0f})"
            f"{f['celery_median_s'] * 1000:>10.0f} ms ({f['celery_best_s'] * 1000:.0f})"
            f"{f['ratio']:>8.2f}"
        )
    print(f"runtime modules imported by solo-os --help: {', '.join(imported) or 'none'}")
    print("slowest imports of the top-level CLI (python -X importtime, cumulative):")
    for name, micros in import_times():
        print(f"  {micros / 1000:6.1f} ms  {name}")
    print(f"budget (solo-os <= {BUDGET} x celery, no runtime imports): {'met' if ok else 'NOT met'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "runs": args.runs,
                "bytecode_compiled": compiled,
                "load_average": os.getloadavg(),
                "figures": figures,
                "runtime_imports": imported,
                "budget_met": ok,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
