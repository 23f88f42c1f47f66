"""The CLI's conventions: fast help, one way to name the app, --json for output and errors,
exit codes, and one clear line for each common mistake (docs/reference/cli.md)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

import solo_os
from solo_os.cli import COMMANDS, _common, cli

ROOT = Path(__file__).resolve().parents[2]
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
RUNTIME = ("sqlalchemy", "asyncpg", "aiosqlite", "uvicorn", "starlette", "fastapi", "httpx", "pydantic",
           "pydantic_settings", "prometheus_client", "opentelemetry", "structlog", "rich", "alembic")
APP = """
from solo_os import App, Context, sources

app = App(service="usage")
app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))


@app.on("billing", "invoice.paid")
async def fulfil(event: dict, ctx: Context) -> None:
    ctx.log.info("ok")


@app.cron("0 2 * * *", name="nightly")
async def nightly(ctx: Context) -> None:
    pass
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("SOLO_OS_") or name in ("DATABASE_URL", "BILLING_WEBHOOK_SECRET"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_common, "_warned", False)
    return CliRunner()


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with app.py and a migrated database, as a user's project."""
    (tmp_path / "app.py").write_text(APP)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", "s" * 24)
    up = runner.invoke(cli, ["db", "upgrade", "--json"])
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout)["revision"]
    return tmp_path


def test_help_and_version_import_nothing_of_the_runtime() -> None:
    probe = (
        "import sys\nfrom solo_os.cli import cli\n"
        "for args in (['--help'], ['--version'], ['-h']):\n"
        "    try:\n        cli(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1].replace("'", '"')))
    assert loaded & set(RUNTIME) == set(), "the top-level CLI must import these lazily"
    assert "Commands:" in out and "dlq" in out and f"solo-os {solo_os.__version__}" in out


def test_version_is_the_packages() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = subprocess.run([SOLO_OS, "--version"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, f"solo-os {declared}\n")
    assert solo_os.__version__ == declared


def test_every_listed_command_loads_with_the_help_line_shown_for_it(runner: CliRunner) -> None:
    from solo_os.cli import Lazy

    for name, lazy in COMMANDS.items():
        assert isinstance(lazy, Lazy)
        command = lazy.load()
        assert command.get_short_help_str(10**6) == lazy.help, name
        shown = runner.invoke(cli, [name, "-h"])
        assert shown.exit_code == 0, (name, shown.output)
        assert f"solo-os {name}" in shown.stdout


def test_the_app_is_named_the_same_way_everywhere(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = project / "sub"
    elsewhere.mkdir()
    other = elsewhere / "other.py"
    other.write_text(APP.replace('"nightly"', '"weekly"'))
    # ./app.py by default; positional; --app; SOLO_OS_APP; a positional wins over the variable
    names = {}
    for args, env in (
        ([], {}),
        ([str(other)], {}),
        (["--app", str(other)], {}),
        ([], {"SOLO_OS_APP": str(other)}),
        (["app.py"], {"SOLO_OS_APP": str(other)}),
    ):
        r = runner.invoke(cli, ["schedules", "list", *args, "--json"], env=env)
        assert r.exit_code == 0, (args, env, r.output)
        names[(tuple(args), tuple(env))] = [s["name"] for s in json.loads(r.stdout)]
    assert list(names.values()) == [["nightly"], ["weekly"], ["weekly"], ["weekly"], ["nightly"]]
    # commands with other arguments take --app the same way
    for args in (["schedules", "pause", "weekly", "--app", str(other), "--json"],
                 ["schedules", "resume", "weekly", "-a", str(other), "--json"]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["changed"] is True
    check = runner.invoke(cli, ["config", "check", "--json"])
    assert check.exit_code == 0, check.output
    assert {k: json.loads(check.stdout)[k] for k in ("app", "handlers", "schedules")} == {
        "app": "app.py", "handlers": 1, "schedules": 1,
    }
    monkeypatch.chdir(elsewhere)
    (project / "app.py").rename(project / "moved.py")
    nothing = runner.invoke(cli, ["schedules", "list", "--json"])
    assert nothing.exit_code == 2
    error = json.loads(nothing.stdout)
    assert error["error"] == "config_error" and "set SOLO_OS_APP" in error["message"]


def test_errors_are_json_objects_under_json(runner: CliRunner, project: Path) -> None:
    usage = runner.invoke(cli, ["events", "list", "--json", "--no-such-flag"])
    assert usage.exit_code == 2
    assert json.loads(usage.stdout)["error"] == "usage_error"
    bad_id = runner.invoke(cli, ["executions", "show", "nope", "--json"])
    assert bad_id.exit_code == 2
    assert json.loads(bad_id.stdout)["message"] == "EXECUTION_ID: 'nope' is not an id"
    missing = runner.invoke(cli, ["events", "show", str(uuid.uuid4()), "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "not_found"
    # and plain text without --json
    text = runner.invoke(cli, ["events", "show", str(uuid.uuid4())])
    assert text.exit_code == 1 and text.stdout == "" and text.stderr.startswith("no event ")


def test_dlq_commands_answer_json_and_a_mistyped_id_fails(runner: CliRunner, project: Path) -> None:
    unknown = str(uuid.uuid4())
    replay = runner.invoke(cli, ["dlq", "replay", unknown, "--json"])
    assert replay.exit_code == 1, replay.output
    assert json.loads(replay.stdout) == {"replayed": 0, "not_dead": [], "not_found": [unknown]}
    text = runner.invoke(cli, ["dlq", "replay", unknown])
    assert text.exit_code == 1 and f"no such execution: {unknown}" in text.stderr
    dry = runner.invoke(cli, ["dlq", "purge", "--all", "--dry-run", "--json"])
    assert (dry.exit_code, json.loads(dry.stdout)) == (0, {"dry_run": True, "would_purge": 0, "ids": []})
    purge = runner.invoke(cli, ["dlq", "purge", "--all", "--yes", "--json"])
    assert (purge.exit_code, json.loads(purge.stdout)) == (0, {"purged": 0})
    unconfirmed = runner.invoke(cli, ["dlq", "purge", "--all", "--json"])
    assert unconfirmed.exit_code == 2 and "--yes" in json.loads(unconfirmed.stdout)["message"]


def test_a_broken_app_is_one_line_with_its_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from solo_os import App\n\napp = App(service='x'\n")
    r = runner.invoke(cli, ["config", "check", "app.py"])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == ["config error: APP: app.py:3: syntax error: '(' was never closed"]
    (tmp_path / "app.py").write_text("import no_such_module_here\n")
    r = runner.invoke(cli, ["schemas", "export", "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["message"] == (
        "APP: app.py:1: ModuleNotFoundError: No module named 'no_such_module_here'"
    )


def test_a_misspelt_variable_is_warned_about(runner: CliRunner, tmp_path: Path) -> None:
    typos = {"DATABSE_URL": "postgresql://db/x", "SOLO_OS_LOGFORMAT": "x"}
    r = runner.invoke(cli, ["config", "check"], env=typos)
    assert r.exit_code == 0, r.output
    assert "warning: DATABSE_URL is set, but solo-os reads no such variable: did you mean DATABASE_URL?" in (
        r.stderr
    )
    assert "did you mean SOLO_OS_LOG_FORMAT?" in r.stderr
    quiet = runner.invoke(cli, ["config", "check"], env={"DATABASE_URL": "sqlite:///x.db"})
    assert "warning" not in quiet.stderr


def test_database_mistakes_are_named(runner: CliRunner, tmp_path: Path) -> None:
    # a read-only command in a folder without the database: says so, creates nothing
    listed = runner.invoke(cli, ["events", "list"])
    assert listed.exit_code == 2
    assert f"no database at {tmp_path / 'solo_os.db'}" in listed.stderr
    assert list(tmp_path.iterdir()) == []
    # a SQLite file in a folder that does not exist
    gone = runner.invoke(cli, ["db", "upgrade"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/nope/x.db"})
    assert gone.exit_code == 2 and f"the folder {tmp_path / 'nope'} does not exist" in gone.stderr
    assert "Traceback" not in gone.output
    # PostgreSQL that does not answer: host and port, never the password
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = runner.invoke(
        cli, ["events", "list", "--json"], env={"DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{port}/shop"}
    )
    assert down.exit_code == 1
    error = json.loads(down.stdout)
    assert error["error"] == "store_error"
    assert f"PostgreSQL at 127.0.0.1:{port}, database shop" in error["message"]
    assert "hunter2" not in down.output


def test_a_port_in_use_exits_3(runner: CliRunner, project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = runner.invoke(cli, ["run", "--port", str(port)])
    assert r.exit_code == 3, r.output
    assert r.stderr.startswith(f"cannot listen on 127.0.0.1:{port}")


def test_every_variable_solo_os_reads_is_known_to_the_typo_warning() -> None:
    """A variable read anywhere in src/ (or by this test suite) is not warned about as unknown."""
    from solo_os import config

    read = set()
    for path in [*(ROOT / "src" / "solo_os").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        read |= set(re.findall(
            r"(?:environ\.get\(|environ\[|getenv\(|envvar=|alias=|_ENV = )[\"'](SOLO_OS_[A-Z0-9_]+)",
            path.read_text(),
        ))
    assert read, "found the variables"
    assert config.misspelt(read) == []
    assert config.misspelt(["SOLO_OS_NOT_A_SETTING"]) == [
        "SOLO_OS_NOT_A_SETTING is set, but solo-os reads no such variable"
    ]


def test_the_public_names_load_on_first_use() -> None:
    probe = (
        "import sys, solo_os\n"
        "before = 'pydantic' in sys.modules\n"
        "from solo_os import *\n"
        "import solo_os.app, solo_os.errors\n"
        "assert App is solo_os.app.App and StoreError is solo_os.errors.StoreError\n"
        "assert sorted(n for n in solo_os.__all__ if n in dir(solo_os)) == sorted(solo_os.__all__)\n"
        "print(before, sources.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "False solo_os.sources\n"), out.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = solo_os.Nope  # type: ignore[attr-defined]


def test_every_command_that_prints_takes_json() -> None:
    import typer

    def leaves(command: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
        subs = getattr(command, "commands", None)
        if subs is None:
            return [(path, command)]
        return [leaf for name in list(subs) for leaf in leaves(subs[name], (*path, name))]

    found = leaves(typer.main.get_command(cli), ())
    assert len(found) > 25
    for path, command in found:
        if path[0] in ("run", "serve", "worker", "scheduler", "consume"):  # servers: logs, not output
            continue
        options = {o for p in command.params for o in p.opts}  # type: ignore[attr-defined]
        assert "--json" in options, path
