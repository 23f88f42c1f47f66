"""Where a source's signing secret comes from, and how a rotated one is picked up.

A source names an environment variable (``secret_env="STRIPE_WEBHOOK_SECRET"``). Its value is
a comma-separated list (several secrets: rotation); each entry is a secret itself or a
reference to one:

==========================================  ===================================================
entry                                       resolved by
==========================================  ===================================================
``whsec_...`` (anything else)               itself
``file:/run/secrets/stripe``                the file's content
``aws-sm:NAME-OR-ARN[#json-key]``           AWS Secrets Manager (boto3), ``SecretString``
``arn:aws:secretsmanager:...[#json-key]``   the same, written as a bare ARN
``doppler:NAME`` / ``doppler:PRJ/CFG/NAME`` ``doppler secrets get NAME --plain``
``op://vault/item/field``                   ``op read`` (1Password)
==========================================  ===================================================

``{secret_env}_FILE`` (the Docker and Kubernetes secrets convention) names a file to read
instead. A file or a provider's value may itself hold several secrets, separated by commas or
newlines, so "old,new" there works like it does in the variable.

Plain values are fixed for the life of the process. Everything else is resolved again after a
time to live (``SOLO_OS_SECRET_TTL`` seconds, default 60; 0 turns it off), in a worker thread,
so a rotated secret is picked up without a restart and no request waits for the provider.
Errors name the variable, the reference and the provider's error code, never a secret value.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from solo_os import errors
from solo_os.observability import logs as slog

log = structlog.get_logger("solo_os.secrets")

TTL_ENV = "SOLO_OS_SECRET_TTL"
DEFAULT_TTL = 60.0
MAX_TTL = 86_400.0
CLI_TIMEOUT = 15.0
MAX_FILE_BYTES = 64 * 1024  # a secret file larger than this is a mistake (a wrong path)
_DOPPLER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOPPLER_PART = re.compile(r"^[A-Za-z0-9_.-]+$")
_ARN = "arn:aws:secretsmanager:"

Resolver = Callable[[str, Mapping[str, str]], tuple[str, ...]]
Check = Callable[[tuple[str, ...]], str | None]


# --- resolving once ----------------------------------------------------------------------


def split_secrets(text: str) -> tuple[str, ...]:
    """Several secrets in one value: separated by commas or newlines, blanks dropped."""
    return tuple(s.strip() for s in re.split(r"[,\r\n]", text) if s.strip())


def is_reference(entry: str) -> bool:
    """True when ``entry`` points at a secret instead of being one."""
    entry = entry.strip()
    return entry.startswith(("file:", "aws-sm:", _ARN, "doppler:", "op://"))


def is_static(secret_env: str, env: Mapping[str, str]) -> bool:
    """True when the secrets are plain values in the variable (nothing to re-read later)."""
    if env.get(f"{secret_env}_FILE", "").strip():
        return False
    return not any(is_reference(e) for e in env.get(secret_env, "").split(","))


def resolve(secret_env: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets behind ``secret_env`` in ``env``; ``ConfigError`` when there are none.

    Blocking (files, boto3, CLIs): call it at start-up or from a worker thread.
    """
    raw = env.get(secret_env, "").strip()
    file_var = f"{secret_env}_FILE"
    path = env.get(file_var, "").strip()
    if raw and path:
        raise errors.ConfigError(f"{secret_env}: set either {secret_env} or {file_var}, not both")
    if path:
        found = _read_file(secret_env, path)
    elif raw:
        found = tuple(
            s for entry in raw.split(",") if entry.strip() for s in _entry(secret_env, entry.strip(), env)
        )
    else:
        raise errors.ConfigError(f"{secret_env}: not set (nor {file_var})")
    if not found:
        raise errors.ConfigError(f"{secret_env}: resolves to no secret (empty value)")
    return found


def _entry(secret_env: str, entry: str, env: Mapping[str, str]) -> tuple[str, ...]:
    if entry.startswith("file:"):
        return _read_file(secret_env, entry[len("file:") :])
    if entry.startswith("aws-sm:"):
        return split_secrets(aws_secret(secret_env, entry[len("aws-sm:") :], env))
    if entry.startswith(_ARN):
        return split_secrets(aws_secret(secret_env, entry, env))
    if entry.startswith("doppler:"):
        return split_secrets(_doppler(secret_env, entry[len("doppler:") :], env))
    if entry.startswith("op://"):
        return split_secrets(run_cli(secret_env, "op", ["read", "--no-newline", entry], env, "1Password"))
    return (entry,)


def _read_file(secret_env: str, name: str) -> tuple[str, ...]:
    path = Path(name.strip())
    if not str(path):
        raise errors.ConfigError(f"{secret_env}: a secret file reference needs a path")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise errors.ConfigError(
            f"{secret_env}: cannot read secret file {str(path)!r}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise errors.ConfigError(
            f"{secret_env}: secret file {str(path)!r} is larger than {MAX_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ConfigError(f"{secret_env}: secret file {str(path)!r} is not UTF-8 text") from None
    return split_secrets(text)


def aws_secret(secret_env: str, ref: str, env: Mapping[str, str]) -> str:
    """``SecretString`` of an AWS Secrets Manager secret (``NAME-OR-ARN[#json-key]``)."""
    secret_id, _, key = ref.strip().partition("#")
    if not secret_id:
        raise errors.ConfigError(f"{secret_env}: aws-sm: needs a secret name or ARN")
    try:
        import boto3  # type: ignore[import-untyped]  # no stubs; an optional extra
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )
    except ImportError:
        raise errors.ConfigError(
            f"{secret_env}: AWS Secrets Manager needs boto3 (pip install 'solo-os[aws]')"
        ) from None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or _arn_region(secret_id)
    where = f"{secret_env}: AWS Secrets Manager secret {secret_id!r}"
    try:
        client: Any = boto3.session.Session(region_name=region or None).client(
            "secretsmanager", endpoint_url=env.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or None
        )
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise errors.ConfigError(f"{where}: {code}") from None
    except BotoCoreError as exc:
        raise errors.ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    text = response.get("SecretString")
    if text is None:
        binary = response.get("SecretBinary")
        try:
            text = bytes(binary).decode("utf-8") if binary is not None else None
        except UnicodeDecodeError:
            raise errors.ConfigError(f"{where}: binary secret is not UTF-8 text") from None
    if text is None:
        raise errors.ConfigError(f"{where}: has no value")
    return _json_key(where, text, key) if key else text


def _json_key(where: str, text: str, key: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        raise errors.ConfigError(f"{where}: #{key} given but the secret is not JSON") from None
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise errors.ConfigError(f"{where}: no text field {key!r} in the secret's JSON")
    return value


def _arn_region(secret_id: str) -> str | None:
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith(_ARN) and len(parts) > 3 and parts[3] else None


def _doppler(secret_env: str, ref: str, env: Mapping[str, str]) -> str:
    parts = ref.strip().split("/")
    if len(parts) == 1:
        name, scope = parts[0], []
    elif len(parts) == 3 and all(_DOPPLER_PART.match(p) for p in parts[:2]):
        name, scope = parts[2], ["--project", parts[0], "--config", parts[1]]
    else:
        raise errors.ConfigError(
            f"{secret_env}: write doppler:NAME or doppler:PROJECT/CONFIG/NAME, not {ref!r}"
        )
    if not _DOPPLER_NAME.match(name):
        raise errors.ConfigError(f"{secret_env}: {name!r} is not a Doppler secret name")
    return run_cli(secret_env, "doppler", ["secrets", "get", name, "--plain", *scope], env, "Doppler")


def run_cli(secret_env: str, command: str, args: list[str], env: Mapping[str, str], product: str) -> str:
    """Standard output of a secrets manager's CLI; ``ConfigError`` when absent or failing."""
    merged = {**os.environ, **env}
    path = shutil.which(command, path=merged.get("PATH"))
    if path is None:
        raise errors.ConfigError(
            f"{secret_env}: the {product} CLI ({command!r}) is not installed or not on PATH; "
            f"install it, or give the secret another way"
        )
    shown = " ".join([command, *args[:2]])
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv (no shell); the CLI comes from PATH
            [path, *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=merged,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise errors.ConfigError(f"{secret_env}: `{shown}` timed out after {CLI_TIMEOUT:g}s") from None
    except OSError as exc:
        raise errors.ConfigError(f"{secret_env}: cannot run {command!r}: {exc.strerror}") from None
    if done.returncode != 0:
        # Only stderr is shown: stdout is where a secret would be.
        first = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = first[0][:200] if first else "no message"
        raise errors.ConfigError(f"{secret_env}: `{shown}` failed (exit {done.returncode}): {reason}")
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ConfigError(f"{secret_env}: `{shown}` printed something that is not UTF-8") from None


def ttl(env: Mapping[str, str]) -> float:
    """Seconds between re-reads of file and provider secrets (``SOLO_OS_SECRET_TTL``)."""
    raw = env.get(TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_TTL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_TTL:
        raise errors.ConfigError(f"{TTL_ENV}: must be seconds between 0 and {MAX_TTL:g}, not {raw!r}")
    return value


# --- staying current ------------------------------------------------------------------------


class Refreshing:
    """A source's secrets, re-resolved in the background once their time to live has passed.

    ``current()`` never blocks inside an event loop: when the value is due it starts one
    re-resolution in a worker thread and returns the value it has; the new value is used from
    the moment it arrives. A failed or invalid re-resolution keeps the last good value (a
    secrets manager's outage does not take the webhooks down) and is logged. Old and new are
    both valid for as long as the stored value lists both ("new,old").
    """

    def __init__(
        self,
        secret_env: str,
        env: Mapping[str, str],
        *,
        check: Check | None = None,
        ttl_seconds: float | None = None,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_env = secret_env
        self._env = env
        self._check = check
        self._resolver = resolver
        self._clock = clock
        self.ttl = ttl(env) if ttl_seconds is None else ttl_seconds
        self.static = is_static(secret_env, env)
        self._value = self._resolve_checked()
        self._due = clock() + self.ttl
        self._lock = threading.Lock()
        self._pending: asyncio.Future[tuple[str, ...]] | None = None
        self.refreshes = 0  # re-resolutions that completed (for tests and logs)

    def __repr__(self) -> str:
        return f"<Refreshing {self.secret_env} ttl={self.ttl:g}s static={self.static}>"

    def _resolve_checked(self) -> tuple[str, ...]:
        value = self._resolver(self.secret_env, self._env)
        problem = self._check(value) if self._check is not None else None
        if problem:
            raise errors.ConfigError(f"{self.secret_env}: {problem}")
        slog.redactor.add(*value)
        return value

    def current(self) -> tuple[str, ...]:
        """The secrets to verify with now (starts a background refresh when they are due)."""
        if self.static or self.ttl <= 0 or self._clock() < self._due:
            return self._value
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()  # no event loop (a script, the CLI): nothing to keep responsive
            return self._value
        with self._lock:
            if self._pending is None:
                self._due = self._clock() + self.ttl
                self._pending = loop.run_in_executor(None, self._resolve_checked)
                self._pending.add_done_callback(self._arrived)
        return self._value

    def refresh(self) -> tuple[str, ...]:
        """Re-resolve now, in this thread (blocking); keeps the old value on failure."""
        self._due = self._clock() + self.ttl
        try:
            value = self._resolve_checked()
        except errors.ConfigError as exc:
            self._failed(exc)
        else:
            self._adopt(value)
        return self._value

    def _arrived(self, future: asyncio.Future[tuple[str, ...]]) -> None:
        with self._lock:
            self._pending = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._adopt(future.result())
        elif isinstance(exc, errors.ConfigError):
            self._failed(exc)
        else:
            log.error("secret.refresh_crashed", secret_env=self.secret_env, error_type=type(exc).__name__)

    def _adopt(self, value: tuple[str, ...]) -> None:
        self.refreshes += 1
        if value != self._value:
            self._value = value
            log.info("secret.rotated", secret_env=self.secret_env, count=len(value))

    def _failed(self, exc: errors.ConfigError) -> None:
        log.warning(
            "secret.refresh_failed",
            secret_env=self.secret_env,
            error=str(exc),
            keeping=len(self._value),
        )


__all__ = [
    "Refreshing",
    "aws_secret",
    "is_reference",
    "is_static",
    "resolve",
    "run_cli",
    "split_secrets",
    "ttl",
]
