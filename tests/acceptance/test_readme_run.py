"""Acceptance: the README's run command, real HTTP, the CLI, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
SOLO_OS = str(Path(sys.executable).parent / "solo-os")


def _readme_run_command() -> list[str]:
    """The first fenced command of the README that runs solo-os (so the test follows the docs)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("python3 scripts/dev.py run"):
            return line.split()
    raise AssertionError("README does not open with 'python3 scripts/dev.py run'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_run_command_serves_signed_webhooks_exactly_once(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the embedded default: ./solo_os.db in the working folder
    env.update(
        BILLING_WEBHOOK_SECRET=helpers.SECRET,
        FULFILMENTS_DB=str(tmp_path / "fulfilments.db"),
    )
    command = [sys.executable if c == "python3" else c for c in _readme_run_command()]
    command[1] = str(ROOT / command[1])
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [*command, "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_answering(f"{base}/readyz", proc, tmp_path / "run.log")
        invoices = [helpers.invoice() for _ in range(5)]
        with httpx.Client(base_url=base, timeout=10) as client:
            for inv in invoices:
                for _ in range(2):  # every delivery twice: the second is a duplicate
                    body, headers = helpers.delivery(inv, key=f"evt-{inv['id']}")
                    r = client.post("/webhooks/billing", content=body, headers=headers)
                    assert r.status_code == 200
            bad_body, bad_headers = helpers.delivery(helpers.invoice(), secret="wrong")
            assert client.post("/webhooks/billing", content=bad_body, headers=bad_headers).status_code == 401
            metrics = client.get("/metrics").text
        assert 'solo_os_deliveries_total{outcome="duplicate",source="billing"} 5.0' in metrics
        cli_env = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'solo_os.db'}"}
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(
                [SOLO_OS, "executions", "list", "--json", "--limit", "0"],
                cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=30,
            )
            assert out.returncode == 0, out.stderr
            rows = json.loads(out.stdout)
            if len(rows) == 10 and all(r["status"] == "succeeded" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.3)
        assert sorted({r["handler"] for r in rows}) == ["audit", "fulfil"]
        for key in ("id", "event_id", "handler", "status", "attempts", "last_error",
                    "created_at", "updated_at"):
            assert key in rows[0]
        events = json.loads(
            subprocess.run(
                [SOLO_OS, "events", "list", "--json"], cwd=tmp_path, env=cli_env,
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout
        )
        assert len(events) == 5 and {e["status"] for e in events} == {"accepted"}
        for key in ("id", "source", "type", "idempotency_key", "status", "received_at", "correlation_id"):
            assert key in events[0]
        conn = sqlite3.connect(tmp_path / "fulfilments.db")
        fulfilled = sorted(r[0] for r in conn.execute("SELECT invoice_id FROM fulfilments"))
        conn.close()
        assert fulfilled == sorted(i["id"] for i in invoices)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        finally:
            log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    text = (tmp_path / "run.log").read_text()
    assert "runtime.stopped" in text and helpers.SECRET not in text
