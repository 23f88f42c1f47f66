"""``solo-os schedules list|trigger|pause|resume|backfill`` as a user runs them (in process,
through the same Typer app the ``solo-os`` script runs)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solo_os.cli import cli as solo_os_cli

APP = textwrap.dedent(
    """
    from solo_os import App, Context

    app = App(service="cli-cron")

    @app.cron("0 2 * * *", name="nightly", timezone="Europe/Berlin")
    async def nightly(ctx: Context) -> None: ...

    @app.cron("*/5 * * * * *", name="often", overlap="allow")
    def often(ctx: Context) -> None: ...
    """
)


class Done:
    def __init__(self, result: Any) -> None:
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


def cli(*args: str, env: dict[str, str]) -> Done:
    return Done(CliRunner().invoke(solo_os_cli, list(args), env=env))


def as_json(*args: str, env: dict[str, str]) -> Any:
    done = cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_schedules_commands(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": database_url, "SOLO_OS_APP": str(app)}
    listed = {row["name"]: row for row in as_json("schedules", "list", env=env)}
    assert set(listed) == {"nightly", "often"}
    assert listed["nightly"]["timezone"] == "Europe/Berlin" and listed["nightly"]["last_fire"] is None
    assert listed["nightly"]["next_fire"].endswith(("T01:00:00+00:00", "T00:00:00+00:00"))

    triggered = as_json("schedules", "trigger", "nightly", env=env)
    shown = as_json("executions", "show", triggered["execution_id"], env=env)
    assert shown["handler"] == "nightly" and shown["event_id"] is None
    assert shown["correlation_id"].startswith("cron:nightly:")

    assert "paused nightly" in cli("schedules", "pause", "nightly", env=env).stdout
    assert "already paused" in cli("schedules", "pause", "nightly", env=env).stdout
    row = next(r for r in as_json("schedules", "list", env=env) if r["name"] == "nightly")
    assert row["paused"] is True and row["last_kind"] == "manual" and row["last_result"] == "pending"
    assert "resumed nightly" in cli("schedules", "resume", "nightly", env=env).stdout

    # a naive --from/--to is in the schedule's zone: 02:00 Berlin is 01:00 UTC in November
    args = ("schedules", "backfill", "nightly", "--from", "2026-11-01", "--to", "2026-11-05T23:00")
    dry = as_json(*args, "--dry-run", env=env)
    assert dry["fires"][0] == "2026-11-01T01:00:00+00:00" and len(dry["fires"]) == 5
    first = as_json(*args, env=env)
    assert (first["created"], first["already_recorded"], first["queued"]) == (5, 0, 5)
    again = cli(*args, env=env)
    assert again.returncode == 0 and "0 new fire(s) of 5 (5 already recorded)" in again.stdout
    assert "backfilling nightly" in again.stderr  # the progress bar

    table = cli("schedules", "list", env=env)
    assert table.returncode == 0 and "nightly" in table.stdout and "next_fire" in table.stdout

    for bad, message in [
        (("schedules", "trigger", "nope"), "no schedule named 'nope'"),
        (("schedules", "backfill", "nightly", "--from", "2026-11-01", "--to", "2999-01-01"), "in the future"),
        (("schedules", "backfill", "nightly", "--from", "yesterday", "--to", "1h"), "neither like"),
    ]:
        done = cli(*bad, env=env)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
