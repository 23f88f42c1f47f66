"""docker-compose.yml and the Dockerfile, run natively: the files cannot drift from the CLI.

Docker does not run here. Instead the compose file is parsed and every solo-os service is
started the way Docker would start it: the image's ENTRYPOINT plus the service's command,
the Dockerfile's ENV overlaid by the service's environment (with ``${VAR:-default}``
interpolation), Docker secrets written to files, and container paths mapped to local ones
(``/app`` is the project, ``/run/secrets`` and ``/data`` temporary folders, the ``db``
service a fresh PostgreSQL database). Then: ``db upgrade`` migrates it, ``serve`` answers
``/readyz``, ``worker`` runs the handlers of a signed delivery sent to ``serve``, and
``scheduler`` runs beside them until it is stopped.
Both the repository's files and a freshly scaffolded project's are checked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import yaml

from solo_os import store as store_mod
from tests.helpers import SECRET, delivery, invoice

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOLO_OS = BIN / "solo-os"
PG_ADMIN_URL = os.environ.get("SOLO_OS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
STRIPE_SECRET = "whsec_compose_test_0123456789"

# --- reading the files --------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        found = env.get(name)
        if op == ":-":
            return found if found else arg
        if op == "-":
            return found if found is not None else arg
        if op in (":?", "?"):
            if not found:
                raise AssertionError(f"compose would stop: {name} unset ({arg})")
            return found
        return found or ""

    return _VAR.sub(one, value)


@dataclass
class Dockerfile:
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = ""
    healthcheck: list[str] = field(default_factory=list)
    base: str = ""
    copies: list[str] = field(default_factory=list)


def read_dockerfile(path: Path) -> Dockerfile:
    """The final stage's ENV, ENTRYPOINT, CMD, USER, WORKDIR, HEALTHCHECK, FROM and COPY."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    out = Dockerfile()
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            out = Dockerfile(base=rest.split()[0])  # a new stage: only the last one counts
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                out.env[key] = value
        elif word in ("ENTRYPOINT", "CMD"):
            setattr(out, word.lower(), json.loads(rest))
        elif word == "USER":
            out.user = rest
        elif word == "WORKDIR":
            out.workdir = rest
        elif word == "HEALTHCHECK":
            out.healthcheck = json.loads(rest[rest.index("CMD") + 3 :].strip())
        elif word == "COPY":
            out.copies.append(rest)
    return out


# --- running a service natively -------------------------------------------------------------


@dataclass
class Project:
    """A compose project (the folder that is ``/app`` in the image) and its stand-ins."""

    folder: Path
    app_path: str  # SOLO_OS_APP inside the image
    host_env: dict[str, str]  # what compose reads from the shell / .env
    database_url: str
    tmp: Path
    compose: dict[str, Any] = field(init=False)
    image: Dockerfile = field(init=False)

    def __post_init__(self) -> None:
        self.compose = yaml.safe_load((self.folder / "docker-compose.yml").read_text())
        self.image = read_dockerfile(self.folder / "Dockerfile")
        (self.tmp / "secrets").mkdir(exist_ok=True)
        (self.tmp / "data").mkdir(exist_ok=True)
        for name, spec in (self.compose.get("secrets") or {}).items():
            if "environment" in spec:
                value = self.host_env[spec["environment"]]
            else:
                value = (self.folder / spec["file"]).read_text()
            (self.tmp / "secrets" / name).write_text(value)

    def service(self, name: str) -> dict[str, Any]:
        return dict(self.compose["services"][name])

    def local_path(self, container_path: str, secrets: list[str]) -> str:
        if container_path.startswith("/run/secrets/"):
            name = container_path.rsplit("/", 1)[1]
            assert name in secrets, f"{container_path}: secret {name!r} not given to the service"
            return str(self.tmp / "secrets" / name)
        if container_path.startswith("/data/"):
            return str(self.tmp / "data" / container_path[len("/data/") :])
        if container_path.startswith("/app/"):
            return str(self.folder / container_path[len("/app/") :])
        return container_path

    def environment(self, name: str) -> dict[str, str]:
        svc = self.service(name)
        raw = svc.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw)
        declared = {**self.image.env, **{k: interpolate(str(v), self.host_env) for k, v in raw.items()}}
        declared.pop("PATH", None)
        secrets = list(svc.get("secrets") or [])
        env = {
            "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.tmp),
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in declared.items():
            if key == "DATABASE_URL":
                self._check_database_url(value)
                value = self.database_url
            elif value.startswith("/"):
                value = self.local_path(value, secrets)
            env[key] = value
        return env

    def _check_database_url(self, url: str) -> None:
        parts = urlsplit(url)
        db = self.service("db")
        db_env = {k: interpolate(str(v), self.host_env) for k, v in db["environment"].items()}
        assert parts.scheme == "postgresql" and parts.hostname == "db" and parts.port == 5432
        assert parts.username == db_env["POSTGRES_USER"]
        assert parts.password == db_env["POSTGRES_PASSWORD"]
        assert parts.path.lstrip("/") == db_env["POSTGRES_DB"]

    def argv(self, name: str, port: int | None = None) -> list[str]:
        assert self.image.entrypoint == ["solo-os"], "the image's entrypoint is the solo-os CLI"
        command = list(self.service(name).get("command") or self.image.cmd)
        out = [str(SOLO_OS)]
        i = 0
        while i < len(command):
            arg = command[i]
            if arg == "--host":
                out += ["--host", "127.0.0.1"]  # 0.0.0.0 in a container; loopback here
                i += 2
                continue
            if arg == "--port":
                assert port is not None
                out += ["--port", str(port)]
                i += 2
                continue
            out.append(arg)
            i += 1
        return out

    def start(self, name: str, port: int | None = None) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:  # the child keeps its own handle
            return subprocess.Popen(
                self.argv(name, port),
                cwd=self.folder,
                env=self.environment(name),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def empty_database(pg_template: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (``db upgrade`` has all the work to do)."""
    name = f"solo_os_compose_{uuid.uuid4().hex[:12]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["repository", "scaffold"])
def project(request: pytest.FixtureRequest, tmp_path: Path, empty_database: str) -> Project:
    host_env = {"BILLING_WEBHOOK_SECRET": SECRET, "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    if request.param == "repository":
        return Project(ROOT, "/app/examples/billing/app.py", host_env, empty_database, tmp_path)
    folder = tmp_path / "shop"
    done = subprocess.run([str(SOLO_OS), "init", str(folder)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return Project(folder, "/app/app.py", host_env, empty_database, tmp_path)


# --- the files' shape ------------------------------------------------------------------------


def test_compose_shape(project: Project) -> None:
    services = project.compose["services"]
    assert set(services) == {"db", "migrate", "serve", "worker", "scheduler"}
    assert services["db"]["image"].startswith("postgres:16")
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for role in ("serve", "worker", "scheduler"):
        assert services[role]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert services[role]["restart"] == "unless-stopped"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["serve"]["command"][0] == "serve" and services["worker"]["command"] == ["worker"]
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["serve"]["ports"] == ["127.0.0.1:8000:8000"]
    assert project.environment("worker")["SOLO_OS_HEALTH_URL"] == ""
    assert project.environment("scheduler")["SOLO_OS_HEALTH_URL"] == ""
    for role in ("migrate", "serve", "worker", "scheduler"):
        env = project.environment(role)
        assert env["SOLO_OS_APP"] == project.local_path(project.app_path, [])
        assert Path(env["SOLO_OS_APP"]).is_file()
        # secrets reach the containers as files, never as plain environment values
        assert "BILLING_WEBHOOK_SECRET" not in env and "BILLING_WEBHOOK_SECRET_FILE" in env


def test_dockerfile_is_slim_non_root_and_healthchecked(project: Project) -> None:
    image = project.image
    assert image.base.startswith("python:") and image.base.endswith("-slim")
    assert image.user and image.user.split(":")[0] not in ("0", "root")
    assert image.healthcheck[:2] == ["python", "-c"]
    assert image.entrypoint == ["solo-os"] and image.cmd[0] == "run"
    assert image.workdir == "/app"
    assert "/app" in " ".join(image.copies)
    ignore = (project.folder / ".dockerignore").read_text()
    assert ".env" in ignore


def test_the_healthcheck_command(project: Project) -> None:
    """The HEALTHCHECK's own command against a server, none, and a worker (no URL)."""
    script = project.image.healthcheck[2]

    def check(url: str) -> int:
        env = {"PATH": os.environ["PATH"], "SOLO_OS_HEALTH_URL": url}
        return subprocess.run(
            [sys.executable, "-c", script], env=env, timeout=30, capture_output=True
        ).returncode

    assert check("") == 0  # a worker: no port, healthy while it runs
    assert check(f"http://127.0.0.1:{free_port()}/healthz") != 0  # nothing listening


# --- the roles, run as compose would run them --------------------------------------------------


def test_roles_run_natively(project: Project) -> None:
    migrate = subprocess.run(
        project.argv("migrate"),
        cwd=project.folder,
        env=project.environment("migrate"),
        capture_output=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout.decode() + migrate.stderr.decode()
    assert "schema at revision" in migrate.stdout.decode()

    port = free_port()
    serve = project.start("serve", port)
    worker = project.start("worker")
    scheduler = project.start("scheduler")
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, serve, project)
        script = project.image.healthcheck[2]
        env = {"PATH": os.environ["PATH"], "SOLO_OS_HEALTH_URL": f"{base}/healthz"}
        assert subprocess.run([sys.executable, "-c", script], env=env, timeout=30).returncode == 0

        data = invoice()
        body, headers = delivery(data, key=f"compose-{uuid.uuid4()}")
        response = httpx.post(f"{base}/webhooks/billing", content=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        accepted = response.json()
        assert accepted["status"] == "accepted" and accepted["executions"] >= 1
        statuses = _wait_finished(project.database_url, uuid.UUID(accepted["event_id"]), worker, project)
        assert set(statuses) == {"succeeded"} and len(statuses) == accepted["executions"]
        if project.folder == ROOT:  # the example records each fulfilment in a ledger on /data
            ledger = project.environment("worker")["FULFILMENTS_DB"]
            with sqlite3.connect(ledger) as conn:
                rows = conn.execute("SELECT invoice_id FROM fulfilments").fetchall()
            assert rows == [(data["id"],)]
        assert scheduler.poll() is None, project.log("scheduler")  # it runs beside them
        if project.folder != ROOT:  # the scaffold has a nightly cron: the scheduler holds it
            assert "daily-reconciliation" in project.log("scheduler")
    finally:
        for proc in (serve, worker, scheduler):
            proc.send_signal(signal.SIGTERM)
        codes = [_wait(proc) for proc in (serve, worker, scheduler)]
    logs = project.log("serve") + project.log("worker") + project.log("scheduler")
    assert codes == [0, 0, 0], logs


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


def _wait_ready(base: str, proc: subprocess.Popen[bytes], project: Project) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{project.log('serve')}")
        try:
            r = httpx.get(f"{base}/readyz", timeout=2)
            if r.status_code == 200 and r.json()["status"] == "ready":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve never became ready:\n{project.log('serve')}")


def _wait_finished(
    url: str, event_id: uuid.UUID, worker: subprocess.Popen[bytes], project: Project
) -> list[str]:
    async def statuses() -> list[str]:
        store = store_mod.connect(url)
        try:
            found = await store.list_executions(store_mod.Filters(limit=0), event_id=event_id)
            return [x.status for x in found]
        finally:
            await store.close()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited {worker.returncode}:\n{project.log('worker')}")
        found = asyncio.run(statuses())
        if found and all(s not in ("pending", "running") for s in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"the worker did not finish the executions:\n{project.log('worker')}")


def test_interpolation() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A:-x}/${B:-y}/${E:-z}/${E-w}/$A/$$A", env) == "1/y/z//1/$A"
    with pytest.raises(AssertionError, match="B unset"):
        interpolate("${B:?needed}", env)
