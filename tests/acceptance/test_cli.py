"""The CLI as users run it: configuration errors, config check, list and show commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
EXAMPLE = str(ROOT / "examples" / "billing" / "app.py")


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BILLING_WEBHOOK_SECRET")}
    return subprocess.run(
        [SOLO_OS, *args], env={**base, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_bad_configuration_is_one_line_per_problem_without_traceback(tmp_path: Path) -> None:
    r = cli(
        "run", EXAMPLE,
        env={"MAX_RETRY_ATTEMPTS": "lots", "LOG_LEVEL": "loud", "DATABASE_URL": "mysql://x"},
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert any(line.startswith("config error: MAX_RETRY_ATTEMPTS") for line in lines), lines
    assert any(line.startswith("config error: LOG_LEVEL") for line in lines), lines
    assert any(line.startswith("config error: DATABASE_URL") for line in lines), lines
    assert any("BILLING_WEBHOOK_SECRET" in line for line in lines), lines  # fails closed, named


def test_missing_secret_fails_closed_naming_the_variable(tmp_path: Path) -> None:
    r = cli("config", "check", EXAMPLE, cwd=tmp_path)
    assert r.returncode == 2
    assert "BILLING_WEBHOOK_SECRET: not set" in r.stderr and "Traceback" not in r.stderr
    ok = cli("config", "check", EXAMPLE, env={"BILLING_WEBHOOK_SECRET": "s" * 20}, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 handler(s)" in ok.stdout


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    r = cli(
        "serve", EXAMPLE, "--port", "0",
        env={"BILLING_WEBHOOK_SECRET": "s" * 20, "DATABASE_URL": f"sqlite:///{tmp_path}/new.db"},
    )
    assert r.returncode == 2
    assert "run 'solo-os db upgrade' first" in r.stderr
    up = cli("db", "upgrade", env={"DATABASE_URL": f"sqlite:///{tmp_path}/new.db"})
    assert up.returncode == 0 and "schema at revision" in up.stdout


async def test_list_and_show_commands(sqlite_url: str, tmp_path: Path) -> None:
    from tests.apps.billing import Effects, make_app

    async with helpers.running(make_app(Effects()), sqlite_url) as h:
        ok = await h.post("billing", helpers.invoice(), key="cli-1")
        await h.post("billing", helpers.invoice(amount_cents=0), key="cli-2")

        async def done() -> bool:
            from solo_os import store as store_mod

            xs = await h.store.list_executions(store_mod.Filters())
            return len(xs) == 2 and all(x.status == "succeeded" for x in xs)

        await helpers.eventually(done)
    env = {"DATABASE_URL": sqlite_url}
    events = json.loads(cli("events", "list", "--json", env=env).stdout)
    assert {e["status"] for e in events} == {"accepted", "rejected"}
    rejected = json.loads(cli("events", "list", "--json", "--status", "rejected", env=env).stdout)
    assert [e["idempotency_key"] for e in rejected] == ["cli-2"]
    shown = json.loads(cli("events", "show", ok.json()["event_id"], "--json", env=env).stdout)
    assert shown["payload"]["amount_cents"] == 4900 and len(shown["executions"]) == 2
    assert "x-signature" not in shown["headers"]
    xs = json.loads(cli("executions", "list", "--json", "--handler", "fulfil", env=env).stdout)
    assert len(xs) == 1
    x = json.loads(cli("executions", "show", xs[0]["id"], "--json", env=env).stdout)
    assert [a["outcome"] for a in x["attempt_history"]] == ["succeeded"]
    table = cli("executions", "list", env=env)
    assert table.returncode == 0 and "fulfil" in table.stdout and "succeeded" in table.stdout
    missing = cli("executions", "show", "not-an-id", env=env)
    assert missing.returncode == 2 and "is not an id" in missing.stderr
    limited = json.loads(cli("events", "list", "--json", "--limit", "1", env=env).stdout)
    assert len(limited) == 1


def test_serve_with_several_processes_shares_one_port(tmp_path: Path) -> None:
    import signal
    import socket

    import httpx

    db = f"sqlite:///{tmp_path}/s.db"
    assert cli("db", "upgrade", env={"DATABASE_URL": db}).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": db, "BILLING_WEBHOOK_SECRET": helpers.SECRET}
    proc = subprocess.Popen(
        [SOLO_OS, "serve", EXAMPLE, "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        helpers.wait_answering(f"http://127.0.0.1:{port}/readyz", proc, timeout=30)
        statuses = []
        for i in range(40):
            body, headers = helpers.delivery(helpers.invoice(), key=f"multi-{i % 20}")
            with httpx.Client() as c:  # a new connection each time: spread over both processes
                statuses.append(c.post(f"http://127.0.0.1:{port}/webhooks/billing", content=body,
                                       headers=headers).json()["status"])
        assert statuses.count("accepted") == 20 and statuses.count("duplicate") == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert out.decode().count("runtime.stopped") == 2  # both children shut down cleanly
