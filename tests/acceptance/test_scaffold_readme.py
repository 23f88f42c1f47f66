"""``solo-os init`` on a fresh machine: the scaffold's README commands, run literally.

A new project is scaffolded by this checkout's ``solo-os``; then the README's shell blocks run
line by line in one bash session with a clean environment (no variable of this repository's
set-up, ``python3`` from the base interpreter): ``python3 -m venv .venv``, ``pip install`` of
solo-os from where ``init`` says (this checkout), ``pip install -r requirements-dev.txt``, the
project's own tests (which use the ``solo`` fixture), ``solo-os run app.py``, and then the
second block and the commands in app.py's docstring against it. Plain pip, one virtualenv for
the module. Two substitutions, because other test runs share this machine: ``solo-os run``
gets ``--port`` of a free port (8000 may be taken) and runs in the background, and ``send``
gets the matching ``--url``.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
pytestmark = pytest.mark.slow


def sh_blocks(markdown: str) -> list[list[str]]:
    """The command lines of each fenced ``sh`` block (comment-only lines dropped)."""
    blocks = re.findall(r"```sh\n(.*?)```", markdown, flags=re.S)
    return [
        [line for line in b.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        for b in blocks
    ]


def docstring_commands(app_file: Path) -> list[str]:
    doc = ast.get_docstring(ast.parse(app_file.read_text())) or ""
    return [line.strip() for line in doc.splitlines() if line.startswith("    ") and line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path) -> dict[str, str]:
    """A new shell's environment: the base Python's folder and the system's on PATH."""
    env = {"PATH": f"{Path(sys.base_prefix) / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home)}
    for name in (
        "PIP_CACHE_DIR", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT",
        "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
    ):
        if name in os.environ:  # how this machine reaches the package index
            env[name] = os.environ[name]
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return env


def bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


class Project:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.readme = (folder / "README.md").read_text()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("fresh-machine")
    made = subprocess.run(
        [SOLO_OS, "init", "shop"], cwd=base, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(base)},
    )
    assert made.returncode == 0, made.stderr
    folder = base / "shop"
    project = Project(folder, clean_env(base))
    setup, _ = sh_blocks(project.readme)
    assert not any(line.startswith("solo-os run") for line in setup[:-1]), "run comes last"
    assert setup[-1].startswith("solo-os run app.py")
    done = bash("\n".join(setup[:-1]), folder, project.env, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    project.setup_output = done.stdout  # type: ignore[attr-defined]
    return project


def test_the_readme_installs_solo_os_from_this_checkout(project: Project) -> None:
    assert f"pip install {ROOT}\n" in project.readme
    where = bash(
        ". .venv/bin/activate\npython -c 'import solo_os; print(solo_os.__file__)'\nwhich solo-os",
        project.folder, project.env, timeout=60,
    ).stdout
    venv = project.folder / ".venv"
    assert where.splitlines() == [
        str(next(venv.glob("lib/python3*/site-packages/solo_os/__init__.py"))),
        str(venv / "bin" / "solo-os"),
    ]


def test_the_scaffolds_tests_passed_with_the_solo_fixture(project: Project) -> None:
    out = project.setup_output  # type: ignore[attr-defined]
    assert re.search(r"\b6 passed\b", out), out[-3000:]
    conftest = (project.folder / "tests" / "conftest.py").read_text()
    assert "solo_clock" in conftest and not (project.folder / "tests" / "harness.py").exists()
    assert 'solo_os_app = "app.py"' in (project.folder / "pyproject.toml").read_text()


def test_run_then_send_and_look_as_the_readme_and_docstring_say(project: Project) -> None:
    setup, after = sh_blocks(project.readme)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = project.folder / "run.log"
    run = setup[-1].split("#")[0].strip()
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", f". .venv/bin/activate\nexec {run} --port {port}"],
            cwd=project.folder, env=project.env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        helpers.wait_answering(f"{url}/readyz", server, log)
        documented = docstring_commands(project.folder / "app.py")
        assert documented[:2] == ["cp .env.example .env", "solo-os run app.py"]
        for commands in (after, documented[2:]):
            assert any(c.startswith("solo-os send ") for c in commands), commands
            script = [". .venv/bin/activate"] + [
                f"{c.split('#')[0].strip()} --url {url}" if c.startswith("solo-os send ") else c
                for c in commands
            ]
            done = bash("\n".join(script), project.folder, project.env, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert re.search(r"1/1 200 \{\"status\":\"(accepted|duplicate)\"", done.stdout), done.stdout
            assert "fulfil" in done.stdout  # executions list shows the handler's execution
        deadline = time.monotonic() + 30
        while True:  # the worker in `solo-os run` handles the deliveries
            listed = bash(
                ". .venv/bin/activate\nsolo-os executions list --json --status succeeded",
                project.folder, project.env, timeout=60,
            )
            if '"handler": "fulfil"' in listed.stdout:
                break
            assert time.monotonic() < deadline, listed.stdout + listed.stderr + log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0, log.read_text()[-3000:]
