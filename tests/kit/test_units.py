"""The kit's pure parts: the clock, test settings, generated secrets, database URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import structlog

from solo_os import App, config, errors, sources
from solo_os.sources.standard_webhooks import decode_secret
from solo_os.testing import Clock, _databases, capture_logs, generate_secret, isolated_settings, secrets_for

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def test_the_clock_stands_still_until_moved() -> None:
    clock = Clock(START)
    assert clock() == clock.now() == START and clock.time() == START.timestamp()
    assert clock.advance(90) == START + timedelta(seconds=90)
    assert clock.advance(timedelta(minutes=1), seconds=30) == START + timedelta(minutes=3)
    assert clock.advance(hours=1) == START + timedelta(hours=1, minutes=3)
    assert clock.set(START + timedelta(days=1)) == START + timedelta(days=1)
    assert "2026-03-30" in repr(clock)


def test_the_clock_never_goes_back_and_wants_aware_times() -> None:
    clock = Clock(START)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Clock(datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="advance"):
        clock.advance(fortnights=1)
    other_zone = datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Clock(other_zone).now() == START and Clock(other_zone).now().tzinfo is UTC
    assert abs(Clock().now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_settings_ignore_the_environment_and_take_spec_or_field_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAX_RETRY_ATTEMPTS", "9")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RETRY_BASE_DELAY_MS=7\n")
    app = App()
    s = isolated_settings(app, "sqlite:///x.db", {"LOG_LEVEL": "debug", "lease_seconds": 5})
    assert (s.max_retry_attempts, s.retry_base_delay_ms) == (3, 2000)  # defaults, not env or .env
    assert (s.database_url, s.log_level, s.lease_seconds) == ("sqlite:///x.db", "debug", 5)
    given = App(settings=config.Settings(MAX_RETRY_ATTEMPTS=4))  # type: ignore[call-arg]
    assert isolated_settings(given, "sqlite:///y.db").max_retry_attempts == 4
    with pytest.raises(errors.ConfigError, match="unknown setting 'RETRIES'"):
        isolated_settings(app, "sqlite:///x.db", {"RETRIES": 1})
    with pytest.raises(errors.ConfigError, match="MAX_RETRY_ATTEMPTS"):
        isolated_settings(app, "sqlite:///x.db", {"MAX_RETRY_ATTEMPTS": 0})


def test_generated_secrets_fit_each_source() -> None:
    app = App()
    kinds = {
        "a": sources.hmac(secret_env="A_SECRET"),
        "b": sources.stripe(secret_env="B_SECRET"),
        "c": sources.github(secret_env="C_SECRET"),
        "d": sources.shopify(secret_env="D_SECRET"),
        "e": sources.slack(secret_env="E_SECRET"),
        "f": sources.standard_webhooks(secret_env="F_SECRET"),
        "g": sources.hmac(secret_env=None, verify=False),
    }
    for name, src in kinds.items():
        app.source(name, src)
    env = secrets_for(app, {"A_SECRET": "mine"})
    # six declared, plus the implied ``internal`` source's (SOLO_OS_INTERNAL_SECRET)
    assert env["A_SECRET"] == "mine" and "None" not in env and len(env) == 7
    assert "SOLO_OS_INTERNAL_SECRET" in env
    assert app.prepare(env) == ["source 'g' accepts UNVERIFIED deliveries (verify=False)"]
    assert env["B_SECRET"].startswith("whsec_")
    assert 24 <= len(decode_secret(env["F_SECRET"]) or b"") <= 64  # the spec's range
    assert generate_secret(kinds["c"]) != generate_secret(kinds["c"])

    class Picky(sources.Source):
        def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
            return "never good enough"

    with pytest.raises(errors.ConfigError, match="give one as P_SECRET in the solo_env fixture"):
        generate_secret(Picky(secret_env="P_SECRET"))


def test_captured_logs_carry_bound_context_and_hide_secrets() -> None:
    from solo_os.observability import logs as slog

    slog.redactor.add("hunter2-hunter2")
    log = structlog.get_logger("kit")
    with capture_logs() as logs:
        structlog.contextvars.bind_contextvars(correlation_id="c-1")
        try:
            log.warning("said", text="pw is hunter2-hunter2", api_key="k")
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
    assert logs == [
        {
            "event": "said",
            "text": "pw is [redacted]",
            "api_key": "[redacted]",
            "correlation_id": "c-1",
            "log_level": "warning",
        }
    ]
    log.info("after")  # capture is over: back to the configured processors
    assert len(logs) == 1


def test_database_urls_are_checked_and_rewritten(tmp_path: Path) -> None:
    assert _databases.with_database("postgresql://u:p@h:5/db?sslmode=disable", "t1") == (
        "postgresql://u:p@h:5/t1?sslmode=disable"
    )
    assert _databases.is_postgres("postgres+asyncpg://h/db") and not _databases.is_postgres("sqlite:///x")
    with pytest.raises(errors.ConfigError, match="postgresql:// server URL"):
        _databases.Databases(tmp_path, "sqlite:///x.db")
    with pytest.raises(errors.ConfigError, match="unsupported database 'mysql'"):
        _databases.Databases(tmp_path, "mysql://localhost/x")


async def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    unreachable = _databases.Databases(tmp_path, "postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(errors.StoreUnavailable, match="server unreachable"):
        await unreachable.create(tmp_path)


async def test_sqlite_databases_are_copies_of_one_migrated_template(tmp_path: Path) -> None:
    from solo_os import store as store_mod

    databases = _databases.Databases(tmp_path / "tpl")
    one, two = await databases.create(tmp_path), await databases.create(tmp_path)
    assert one != two and databases.dialect == "sqlite"
    for url in (one, two):
        s = store_mod.connect(url)
        try:
            assert await s.current_revision() == s.head_revision()
        finally:
            await s.close()
    await databases.drop(one)
    databases.close()
