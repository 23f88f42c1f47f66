#!/usr/bin/env python3
"""Set up and run solo-os from a checkout with nothing but Python 3.11+.

    python3 scripts/dev.py run  [solo-os run options]   # the example app on SQLite
    python3 scripts/dev.py test [pytest options]        # the whole test suite

It installs uv into ``.tools/`` (once), lets uv build ``.venv/`` from the committed lock file,
then runs the command. ``run`` installs only what running needs (solo-os's own dependencies);
``test`` adds the default dependency groups (``dev``: test tools and the browser driver,
``bench``: the benchmarks' alternatives). Bytecode is compiled at install time, so a command
does not recompile its imports on every start (environments often set PYTHONDONTWRITEBYTECODE).
CI runs ``.ci/run``, which calls ``test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
UV_VERSION = "0.13.9"
EXAMPLE = ROOT / "examples" / "billing" / "app.py"


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_env(command: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"solo-os needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    uv = _bin(TOOLS, "uv")
    if not uv.exists():
        print(f"setting up uv {UV_VERSION} in {TOOLS} ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run(
            [str(_bin(TOOLS, "python")), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"],
            check=True,
        )
    # run: the project's dependencies only, leaving any test tools in place (--inexact)
    groups = ["--no-default-groups", "--inexact"] if command == "run" else []
    sync = [str(uv), "sync", "--frozen", "--quiet", *groups, "--python", sys.executable]
    # Compiling every installed package takes a while, so only when uv installs something (or
    # the environment was never compiled): an environment in sync is left as it is.
    compiled = ROOT / ".venv" / ".bytecode-compiled"
    if not compiled.exists() or subprocess.run([*sync, "--check"], cwd=ROOT, capture_output=True).returncode:
        subprocess.run([*sync, "--compile-bytecode"], check=True, cwd=ROOT)
        compiled.touch()
    # solo-os itself is installed editable (its source is here): compile it as well
    subprocess.run(
        [str(_bin(ROOT / ".venv", "python")), "-m", "compileall", "-q", str(ROOT / "src")],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_env(argv[0])
    command, rest = argv[0], argv[1:]
    venv_dir = ROOT / ".venv"
    env = dict(os.environ)
    if command == "test":
        os.chdir(ROOT)
        args = [str(_bin(venv_dir, "python")), "-m", "pytest", *rest]
        os.execve(args[0], args, env)  # the test run *is* this process: signals, exit code
    if not env.get("BILLING_WEBHOOK_SECRET"):
        env["BILLING_WEBHOOK_SECRET"] = "dev-secret-change-me"
        print(
            "BILLING_WEBHOOK_SECRET not set: using 'dev-secret-change-me' for this local run",
            file=sys.stderr,
        )
    args = [str(_bin(venv_dir, "solo-os")), "run", str(EXAMPLE), *rest]
    os.execve(args[0], args, env)  # SIGTERM/SIGINT reach solo-os itself
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
