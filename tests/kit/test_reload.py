"""``solo-os run --reload``: a code change restarts the app; running and queued work carry on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests import helpers
from tests.kit import _support

APP = """
import asyncio, os
from solo_os import App, sources

VERSION = {version}
DELAY = {delay}
app = App(service="reload")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

def note(text):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(text + "\\n")

@app.on("billing", "job")
async def job(event, ctx):
    note(f"start {{event['n']}} v{{VERSION}} pid={{os.getpid()}} attempt={{ctx.attempt}}")
    await asyncio.sleep(DELAY)
    note(f"done {{event['n']}} v{{VERSION}} pid={{os.getpid()}}")
"""


def write_app(path: Path, version: int, delay: float) -> None:
    path.write_text(APP.format(version=version, delay=delay))


def wait_for(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def post(port: int, n: int) -> httpx.Response:
    body, headers = helpers.delivery({"n": n}, event_type="job", key=f"job-{n}")
    return httpx.post(f"http://127.0.0.1:{port}/webhooks/billing", content=body, headers=headers, timeout=10)


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_a_code_change_restarts_the_app_and_no_work_is_lost(tmp_path: Path) -> None:
    app, ledger, log = tmp_path / "app.py", tmp_path / "ledger.txt", tmp_path / "supervisor.log"
    write_app(app, version=1, delay=30)
    port = _support.free_port()
    env = _support.clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/solo.db",
        BILLING_WEBHOOK_SECRET=helpers.SECRET,
        LEDGER=str(ledger),
        SOLO_OS_SHUTDOWN_GRACE="0.5",
        SOLO_OS_LEASE_SECONDS="60",
    )
    lines = lambda: ledger.read_text().splitlines() if ledger.exists() else []  # noqa: E731
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [_support.SOLO_OS, "run", str(app), "--reload", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _support.wait_ready(port, supervisor, log)
            assert post(port, 1).json()["status"] == "accepted"
            wait_for(lambda: any(x.startswith("start 1 v1") for x in lines()), "job 1 started")
            first_pid = re.search(r"pid=(\d+)", lines()[0]).group(1)  # type: ignore[union-attr]

            write_app(app, version=2, delay=0)  # job 1 is still sleeping in v1
            # Job 1's lease is released at shutdown (grace 0.5 s) and v2 runs it again.
            wait_for(lambda: any(x.startswith("done 1 v2") for x in lines()), "job 1 done by v2")
            assert not any(x.startswith("done 1 v1") for x in lines())
            [restarted] = [x for x in lines() if x.startswith("start 1 v2")]
            # Another process; the interrupted attempt is on record (so this is attempt 2) and
            # its budget was given back (see test_graceful_shutdown_releases_leases...).
            assert re.search(r"pid=(\d+)", restarted).group(1) != first_pid  # type: ignore[union-attr]
            assert restarted.endswith("attempt=2")
            wait_for(lambda: ready(port), "the new app ready")
            assert post(port, 1).json()["status"] == "duplicate"  # the database carried over
            assert post(port, 2).json()["status"] == "accepted"
            wait_for(lambda: any(x.startswith("done 2 v2") for x in lines()), "job 2 done")

            app.write_text("this is not python\n")  # the app cannot start: wait for a fix
            wait_for(lambda: "exited with code" in log.read_text(), "the broken app reported")
            write_app(app, version=3, delay=0)
            wait_for(lambda: ready(port), "the fixed app ready")
            assert post(port, 3).json()["status"] == "accepted"
            wait_for(lambda: any(x.startswith("done 3 v3") for x in lines()), "job 3 done by v3")
            text = log.read_text()
            assert text.count("changed; restarting") == 3
            assert "app.py:1: NameError" in text and "Traceback" not in text  # one line, no traceback
            assert "did not stop" not in text  # each app stopped within its grace
            pids = [int(p) for p in re.findall(r"app started \(pid (\d+)\)", text)]
            assert len(pids) == 4
        finally:
            supervisor.send_signal(signal.SIGTERM)
            try:
                code = supervisor.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
                raise
    assert code == 0
    for pid in pids:  # every app process is gone with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_reload_refuses_a_missing_app_file(tmp_path: Path) -> None:
    r = _support.cli("run", str(tmp_path / "nope.py"), "--reload", env=_support.clean_env())
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
