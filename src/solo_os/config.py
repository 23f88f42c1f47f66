"""Configuration from the environment or ``.env``, validated once at start (SPEC section 5)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from solo_os import errors

LogLevel = Literal["debug", "info", "warn", "error"]


class Settings(BaseSettings):
    """Every setting solo-os reads; names are the SPEC's environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str = Field("sqlite:///./solo_os.db", alias="DATABASE_URL")
    log_level: LogLevel = Field("info", alias="LOG_LEVEL")
    log_format: Literal["json", "console"] = Field("json", alias="SOLO_OS_LOG_FORMAT")
    max_retry_attempts: int = Field(3, ge=1, le=100, alias="MAX_RETRY_ATTEMPTS")
    retry_base_delay_ms: int = Field(2000, ge=0, le=86_400_000, alias="RETRY_BASE_DELAY_MS")
    admin_token: SecretStr | None = Field(None, alias="SOLO_OS_ADMIN_TOKEN")
    max_body_bytes: int = Field(1_048_576, ge=1, le=64 * 1_048_576, alias="SOLO_OS_MAX_BODY_BYTES")
    worker_concurrency: int = Field(64, ge=1, le=10_000, alias="SOLO_OS_WORKER_CONCURRENCY")
    # `solo-os worker`'s processes (cli/_supervise.py): a count, or "auto" (one per usable core).
    worker_processes: str = Field("1", alias="SOLO_OS_WORKER_PROCESSES")
    lease_seconds: float = Field(30.0, ge=1, le=3600, alias="SOLO_OS_LEASE_SECONDS")
    poll_interval: float = Field(1.0, gt=0, le=60, alias="SOLO_OS_POLL_INTERVAL")
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=3600, alias="SOLO_OS_SHUTDOWN_GRACE")
    metrics_port: int | None = Field(None, ge=1, le=65535, alias="SOLO_OS_METRICS_PORT")
    metrics_host: str = Field("0.0.0.0", min_length=1, alias="SOLO_OS_METRICS_HOST")  # noqa: S104
    # "token": /metrics wants Authorization: Bearer <SOLO_OS_ADMIN_TOKEN>, wherever it is served.
    metrics_auth: Literal["none", "token"] = Field("none", alias="SOLO_OS_METRICS_AUTH")
    metrics_refresh_seconds: float = Field(5.0, gt=0, le=3600, alias="SOLO_OS_METRICS_REFRESH_SECONDS")
    # An execution whose attempts are lost with their process this many times is dead (poison).
    max_losses: int = Field(3, ge=1, le=100, alias="SOLO_OS_MAX_LOSSES")
    # Slow clients: the whole request head must arrive within header_timeout, the body within
    # body_timeout of the head; at most max_connections are open (more are refused).
    header_timeout: float = Field(10.0, gt=0, le=3600, alias="SOLO_OS_HEADER_TIMEOUT")
    body_timeout: float = Field(30.0, gt=0, le=3600, alias="SOLO_OS_BODY_TIMEOUT")
    max_connections: int = Field(2048, ge=1, le=1_000_000, alias="SOLO_OS_MAX_CONNECTIONS")
    # PostgreSQL connections per process: the hot path's pool, the rest's pool, one listener.
    db_pool_size: int = Field(10, ge=1, le=1000, alias="SOLO_OS_DB_POOL_SIZE")
    db_admin_pool_size: int = Field(4, ge=1, le=1000, alias="SOLO_OS_DB_ADMIN_POOL_SIZE")
    # run/serve/worker/scheduler: seconds to keep trying to reach the database at start
    # (refused, down, too many clients) before exiting with status 4; 0 = one attempt.
    db_connect_timeout: float = Field(60.0, ge=0, le=86_400, alias="SOLO_OS_DB_CONNECT_TIMEOUT")
    # "transaction": behind PgBouncer-style transaction pooling (no statement caches, no LISTEN
    # unless SOLO_OS_LISTEN_URL names a direct connection; see store/_pool.py).
    db_pooler: Literal["none", "transaction"] = Field("none", alias="SOLO_OS_DB_POOLER")
    listen_url: SecretStr | None = Field(None, alias="SOLO_OS_LISTEN_URL")
    # Finished executions older than this are pruned daily (events: at least 7 days); 0 = never.
    retention_days: int = Field(30, ge=0, le=36_500, alias="SOLO_OS_RETENTION_DAYS")
    # Queue-fed sources: a consumer stops pulling while its handlers have more pending
    # executions than this (backpressure); a source's max_pending= overrides it.
    consume_max_pending: int = Field(10_000, ge=1, le=10_000_000, alias="SOLO_OS_CONSUME_MAX_PENDING")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            return "warn" if value == "warning" else value
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        driver_url(value)  # raises ValueError with a readable message
        return value

    @field_validator("worker_processes")
    @classmethod
    def _processes(cls, value: str) -> str:
        worker_process_count(value)  # raises ValueError with a readable message
        return value.strip().lower()

    @field_validator("admin_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it guards the admin API)")
        return value

    @field_validator("metrics_auth")
    @classmethod
    def _metrics_auth(cls, value: str, info: ValidationInfo) -> str:
        if value == "token" and info.data.get("admin_token") is None:
            raise ValueError("'token' needs SOLO_OS_ADMIN_TOKEN to be set")
        return value

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if driver_url(self.database_url).startswith("sqlite") else "postgresql"


def driver_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's ``DATABASE_URL``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must look like sqlite:///path.db or postgresql://user@host/db")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite:// or postgresql://")


def load(**overrides: object) -> Settings:
    """Read and validate the settings; every problem becomes one line of a ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "config"
            problems.append(f"{name.upper()}: {err['msg']}")
        raise errors.ConfigError(problems) from None


def environ(env_file: str | Path = ".env") -> Mapping[str, str]:
    """The process environment over the values of ``.env`` (the environment wins)."""
    merged: dict[str, str] = {}
    path = Path(env_file)
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


#: Variables solo-os reads outside ``Settings``: the app to load, secrets' re-read interval, the
#: container health check, the process supervisor's and the test plugin's own; and those of
#: solo-os's own test suite (so its runs warn about nothing).
OTHER_VARIABLES = frozenset({
    "SOLO_OS_APP", "SOLO_OS_SECRET_TTL", "SOLO_OS_REUSE_PORT", "SOLO_OS_HEALTH_URL",
    "SOLO_OS_TEST_DATABASE_URL", "SOLO_OS_SCREENSHOTS", "SOLO_OS_TF_PLUGIN_DIR",
    "SOLO_OS_CHROMIUM", "SOLO_OS_LONG_TESTS", "SOLO_OS_TEST_PG",
    "SOLO_OS_TEST_REDIS", "SOLO_OS_TEST_RABBITMQ", "SOLO_OS_TEST_NATS", "SOLO_OS_INTERNAL_SECRET",
})


def misspelt(names: Iterable[str]) -> list[str]:
    """Warnings for variables that look like settings but are none: an unknown ``SOLO_OS_*``
    name, or one a typo away from a setting (``DATABSE_URL``), which would be ignored silently."""
    known = {str(f.alias) for f in Settings.model_fields.values() if f.alias} | OTHER_VARIABLES
    warnings = []
    for name in sorted(set(names)):
        upper = name.upper()
        if upper in known or len(upper) < 6:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
        if close:
            warnings.append(f"{name} is set, but solo-os reads no such variable: did you mean {close[0]}?")
        elif upper.startswith("SOLO_OS_"):
            warnings.append(f"{name} is set, but solo-os reads no such variable")
    return warnings


def worker_process_count(value: str) -> int:
    """``worker --processes`` / ``SOLO_OS_WORKER_PROCESSES``: a count from 1 to 256, or ``auto``:
    the cores this process may use."""
    value = value.strip().lower()
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if not (value.isdigit() and 1 <= int(value) <= 256):
        raise ValueError("must be a number from 1 to 256, or 'auto' (one per core)")
    return int(value)
