"""Docs as tests: the shell commands of docs/quickstart.md and of every docs/how-to/*.md page,
run as written, in a folder laid out as the docs assume (``.venv/`` of this checkout, the app
as ``app.py``, the database where the defaults put it).

The few substitutions, each for a stated reason:

- a server command (``run``, ``serve``, ``worker``, ``scheduler``) runs in the background until it
  is ready, then gets SIGTERM and must exit 0; a listening port (``--port``, ``--metrics-port``,
  ``127.0.0.1:8000`` in a URL) becomes a free one, since other test runs share this machine;
- a synopsis line (``solo-os dlq list [--source S] ... [--json]``) is checked against the CLI
  (every subcommand and option it names exists) and runs without its optional ``[...]`` parts;
  ``ID`` and ``<id>`` become the id of a real execution or event;
- ``export VAR=...`` naming another machine (``postgresql://solo@db.internal/solo``,
  ``10.0.0.5``) is skipped: the commands after it run with the local defaults instead;
- ``solo-os send`` gets ``--url`` of the server started before it (the docs' default port);
- ``python3 scripts/dev.py run`` is not run here: tests/acceptance/test_readme_run.py runs it;
- a command of another tool that needs a service we do not run (docker, terraform, promtool, a
  non-local URL) is skipped and listed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import typer

from solo_os.cli import cli
from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent
SECRET = "docs-test-secret-0123456789"
SERVERS = ("run", "serve", "worker", "scheduler")
SHELL_LANGS = ("", "sh", "bash", "shell", "console")
LOCAL_TOOLS = ("echo", "cp", "cat", "printf", "mkdir", "openssl")  # run as written: nothing external
HOWTOS = sorted((DOCS / "how-to").glob("*.md"))
pytestmark = pytest.mark.slow


@dataclass
class Block:
    lang: str
    lines: list[str]


def blocks(markdown: str) -> list[Block]:
    found = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", markdown, flags=re.S | re.M):
        # a trailing backslash continues the command on the next line
        joined = re.sub(r"\\\n\s*", " ", body)
        found.append(Block(lang, [line for line in joined.splitlines() if line.strip()]))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def without_comment(line: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` outside quotes, after a blank)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.strip()


def solo_words(command: str) -> list[str] | None:
    """The arguments after ``solo-os`` if the command runs solo-os (after VAR=value prefixes)."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words = words[1:]
    if words and words[0] in ("solo-os", ".venv/bin/solo-os"):
        return words[1:]
    return None


def check_syntax(words: list[str], line: str) -> None:
    """Every subcommand and option the (synopsis) line names exists in the CLI."""
    command = typer.main.get_command(cli)
    ctx = command.make_context("solo-os", ["--help"], resilient_parsing=True)
    rest = [w for w in words if not w.startswith("[")]
    while rest and hasattr(command, "get_command"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, rest = sub, rest[1:]
    assert not hasattr(command, "get_command"), f"{line!r}: no such command"
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    bare = [re.sub(r"[\[\]]", "", w) for w in words]
    named = {w.split("=")[0] for w in bare if w.startswith("-")}
    assert named <= options, f"{line!r}: {sorted(named - options)} not options of {command.name}"


@dataclass
class Walk:
    """One page's commands, run in ``folder``; what was skipped and why."""

    folder: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    known: dict[str, str] = field(default_factory=dict)

    def ids(self) -> dict[str, str]:
        """A dead (else any) execution's id and an event's, read once."""
        if not self.known:
            xs = json.loads(self.sh("solo-os executions list --json --limit 1").stdout)
            dead = json.loads(self.sh("solo-os executions list --json --limit 1 --status dead").stdout)
            found = dead or xs
            self.known = {
                "execution": found[0]["id"] if found else "",
                "event": found[0]["event_id"] if found else "",
            }
        return self.known

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + command],
            cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=120,
        )
        if check:
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done

    def concrete(self, command: str) -> str:
        """A synopsis made runnable: optional parts dropped, ids filled in."""
        while re.search(r"\[[^\[\]]*\]", command):
            command = re.sub(r"\s*\[[^\[\]]*\]", "", command)
        if re.search(r"<id>|\bID\b", command):
            ids = self.ids()
            kind = "event" if " events " in f" {command} " else "execution"
            command = re.sub(r"<id>|\bID\b", ids[kind], command)
        return command

    def listen(self, command: str, words: list[str]) -> str:
        """The server command with free ports in place of the documented ones."""
        port = self.ports.setdefault("http", free_port())
        if words[0] in ("run", "serve"):
            if "--port" in words:
                command = re.sub(r"--port[ =]\d+", f"--port {port}", command)
            else:
                command += f" --port {port}"
        if "--metrics-port" in words:
            metrics = self.ports.setdefault("metrics", free_port())
            command = re.sub(r"--metrics-port[ =]\d+", f"--metrics-port {metrics}", command)
        return command

    def start(self, command: str, words: list[str]) -> None:
        self.stop()
        command = self.listen(command, words)
        log = (self.folder / "server.log").open("wb")
        with log:
            self.server = subprocess.Popen(
                ["bash", "-c", "exec env " + command], cwd=self.folder, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )
        url = {
            "run": f"http://127.0.0.1:{self.ports['http']}/readyz",
            "serve": f"http://127.0.0.1:{self.ports['http']}/readyz",
        }.get(words[0])
        if words[0] == "worker" and "metrics" in self.ports:
            url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        deadline = time.monotonic() + 60
        while True:
            assert self.server.poll() is None, f"{command} exited:\n{self.log()}"
            if url is None:
                if time.monotonic() > deadline - 57:  # alive for 3 s: started
                    break
            else:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, f"{command} not ready:\n{self.log()}"
            time.sleep(0.2)
        self.ran.append(command)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, f"did not stop cleanly:\n{self.log()}"

    def line(self, raw: str) -> None:
        command = without_comment(raw)
        if not command:
            return
        export = re.fullmatch(r"export ([A-Z_][A-Z0-9_]*)=(\S+)", command)
        if export:
            value = export.group(2)
            host = re.search(r"(?:@|://)([^/:@]+)(?:[:/]|$)", value) or re.fullmatch(
                r"(\d+\.\d+\.\d+\.\d+)", value
            )
            if host and host.group(1) not in ("127.0.0.1", "localhost", "0.0.0.0"):  # noqa: S104
                where = host.group(1)
                self.skipped.append(f"{command}: {where} is an example host; local defaults instead")
            else:
                self.env[export.group(1)] = export.group(2)
                self.ran.append(command)
            return
        words = solo_words(command)
        if words is None:
            if command.startswith("python3 scripts/dev.py run"):
                self.skipped.append(f"{command}: run by tests/acceptance/test_readme_run.py")
            elif command.startswith("python3 scripts/dev.py test"):
                self.skipped.append(f"{command}: the test suite itself (.ci/run)")
            elif command.split()[0] in LOCAL_TOOLS:
                self.sh(command)
                self.ran.append(command)
            else:
                self.skipped.append(f"{command}: another tool or service, not run here")
            return
        check_syntax(words, command)
        command = self.concrete(command)
        words = solo_words(command) or []
        if words and words[0] in SERVERS:
            self.start(command, words)  # runs until the next server command, or the end
            return
        if words and words[0] == "send" and "--url" not in words and "http" in self.ports:
            command += f" --url http://127.0.0.1:{self.ports['http']}"  # where the server listens
        self.sh(command)
        self.ran.append(command)


def project(tmp_path: Path, app_source: str) -> Walk:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # the docs say .venv/bin/solo-os
    (tmp_path / "app.py").write_text(app_source)
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path),
        "RETRY_BASE_DELAY_MS": "0",
        "SOLO_OS_POLL_INTERVAL": "0.05",
    }
    return Walk(tmp_path, env)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example app's folder with a dead-letter queue in ./solo_os.db, made once."""
    folder = tmp_path_factory.mktemp("seeded")
    seed_dead_letters(project(folder, (ROOT / "examples" / "billing" / "app.py").read_text()))
    return folder


@pytest.fixture
def walk(tmp_path: Path, seeded: Path) -> Iterator[Walk]:
    w = project(tmp_path, (seeded / "app.py").read_text())
    w.env.update(BILLING_WEBHOOK_SECRET=SECRET, FULFILMENTS_DB=str(tmp_path))
    for db in seeded.glob("solo_os.db*"):
        shutil.copy(db, tmp_path / db.name)
    yield w
    w.stop()


# --- the quickstart ------------------------------------------------------------------------------


def test_quickstart(tmp_path: Path) -> None:
    page = (DOCS / "quickstart.md").read_text()
    app = re.search(r"<!-- docs-test: app -->\n```python\n(.*?)```", page, re.S)
    assert app
    w = project(tmp_path, app.group(1))
    try:
        shell = [b for b in blocks(page) if b.lang in SHELL_LANGS]
        first, send, look = shell
        assert first.lines == ["python3 scripts/dev.py run"]
        w.line(first.lines[0])  # skipped, with its reason

        # 2. "Run it: `BILLING_WEBHOOK_SECRET=s3cret .venv/bin/solo-os run app.py`"
        run = re.search(r"Run it: `([^`]+)`", page)
        assert run and solo_words(run.group(1))
        w.start(run.group(1), solo_words(run.group(1)) or [])

        # 3. the curl block, as one script; then "Send it again": a duplicate
        script = "\n".join(
            line.replace("127.0.0.1:8000", f"127.0.0.1:{w.ports['http']}")
            for line in send.lines if not line.startswith("#")
        )
        first_answer = w.sh(script).stdout
        assert json.loads(first_answer).get("status") == "accepted", first_answer
        assert json.loads(w.sh(script).stdout)["status"] == "duplicate"
        w.ran.append(script)

        deadline = time.monotonic() + 30
        while '"succeeded"' not in w.sh(".venv/bin/solo-os executions list --json").stdout:
            assert time.monotonic() < deadline, w.log()
            time.sleep(0.3)

        # 4. look inside, with <id> the real execution's
        for line in look.lines:
            w.line(line)
        assert len(w.ran) == 2 + len(look.lines)
        # "Add --json to any list for scripts."
        for line in look.lines:
            words = solo_words(without_comment(line)) or []
            if "list" in words:
                listed = w.sh(f"{without_comment(line)} --json").stdout
                assert isinstance(json.loads(listed), list)
    finally:
        w.stop()
    assert w.skipped == ["python3 scripts/dev.py run: run by tests/acceptance/test_readme_run.py"]


def test_the_example_apps_docstring(tmp_path: Path) -> None:
    """examples/billing/app.py says how to run it and send it a delivery, from the repository's
    root: here a folder with the same layout (so the databases land in a temporary folder)."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    w = project(tmp_path, "")
    w.env["FULFILMENTS_DB"] = str(tmp_path / "fulfilments.db")
    doc = ast.get_docstring(ast.parse((ROOT / "examples" / "billing" / "app.py").read_text())) or ""
    commands = [line.strip() for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    assert any(c.startswith(".venv/bin/solo-os run ") for c in commands)
    assert any(c.startswith(".venv/bin/solo-os send ") for c in commands)
    try:
        for command in commands:
            w.line(command)
        deadline = time.monotonic() + 30
        while '"succeeded"' not in w.sh(".venv/bin/solo-os executions list --json --handler fulfil").stdout:
            assert time.monotonic() < deadline, w.log()
            time.sleep(0.3)
    finally:
        w.stop()
    assert w.skipped == [] and len(w.ran) == len(commands)


def test_readme(tmp_path: Path) -> None:
    """The README's app and the commands after it (the first block is test_readme_run's)."""
    page = (ROOT / "README.md").read_text()
    app = re.search(r"```python\n(.*?)```", page, re.S)
    assert app
    w = project(tmp_path, app.group(1))
    setup, after = [b for b in blocks(page) if b.lang in SHELL_LANGS][:2]
    try:
        for line in [*setup.lines, *after.lines]:
            w.line(line)
        listed = json.loads(w.sh("solo-os executions list --json").stdout)
        deadline = time.monotonic() + 30
        while not any(x["handler"] == "fulfil" and x["status"] == "succeeded" for x in listed):
            assert time.monotonic() < deadline, (listed, w.log())
            time.sleep(0.3)
            listed = json.loads(w.sh("solo-os executions list --json").stdout)
    finally:
        w.stop()
    assert w.skipped == [
        "python3 scripts/dev.py run: run by tests/acceptance/test_readme_run.py",
        "python3 scripts/dev.py test: the test suite itself (.ci/run)",
    ]
    assert len(w.ran) == len(after.lines)


# --- the how-to pages -----------------------------------------------------------------------------


def seed_dead_letters(w: Walk) -> None:
    """Two deliveries whose ``fulfil`` dies (its ledger cannot be opened), one ``audit`` that
    succeeds: the dead-letter queue the how-to pages talk about."""
    w.env.update(BILLING_WEBHOOK_SECRET=SECRET, FULFILMENTS_DB=str(w.folder))  # a folder: no ledger
    w.sh("solo-os db upgrade")
    port = free_port()
    with (w.folder / "seed.log").open("wb") as log:
        server = subprocess.Popen(
            ["solo-os", "run", "app.py", "--port", str(port)], cwd=w.folder, env=w.env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        data = (ROOT / "examples" / "billing" / "invoice.json").read_text()
        helpers.wait_answering(f"http://127.0.0.1:{port}/readyz", server, w.folder / "seed.log")
        for n in range(2):
            changed = data.replace("7d0e2a6c", f"7d0e2a6{n}")
            w.sh(f"solo-os send billing invoice.paid --data '{changed}' --url http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while len(json.loads(w.sh("solo-os dlq list --json").stdout)) < 2:
            assert time.monotonic() < deadline, (w.folder / "seed.log").read_text()
            time.sleep(0.3)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


@pytest.mark.parametrize("page", HOWTOS, ids=[p.stem for p in HOWTOS])
def test_how_to(page: Path, walk: Walk) -> None:
    shell = [line for b in blocks(page.read_text()) if b.lang in SHELL_LANGS for line in b.lines]
    for line in shell:
        walk.line(line)
    walk.stop()
    print(f"{page.name}: ran {len(walk.ran)}, skipped {len(walk.skipped)}")
    for reason in walk.skipped:
        print(f"  skipped: {reason}")
    solo_lines = [line for line in shell if solo_words(without_comment(line) or "true") is not None]
    assert len(walk.ran) >= len(solo_lines)  # every solo-os command ran
