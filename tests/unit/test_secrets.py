"""Secrets: environment, files, AWS Secrets Manager (moto), Doppler and 1Password CLIs, rotation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from structlog.testing import capture_logs

from solo_os import errors, sources
from solo_os import secret_sources as secrets
from solo_os.observability import logs as slog

# --- the environment (default) ------------------------------------------------------------


def test_plain_value_and_comma_separated_rotation() -> None:
    assert secrets.resolve("S", {"S": "only"}) == ("only",)
    assert secrets.resolve("S", {"S": " new , old ,, "}) == ("new", "old")


def test_unset_or_empty_is_an_error_that_names_the_variable() -> None:
    with pytest.raises(errors.ConfigError, match=r"^S: not set \(nor S_FILE\)$"):
        secrets.resolve("S", {})
    with pytest.raises(errors.ConfigError, match="S: not set"):
        secrets.resolve("S", {"S": "   "})
    with pytest.raises(errors.ConfigError, match="resolves to no secret"):
        secrets.resolve("S", {"S": " , "})


# --- files (Docker / Kubernetes secrets) ----------------------------------------------------


def test_file_variable_reads_the_file_one_secret_per_line(tmp_path: Path) -> None:
    path = tmp_path / "stripe"
    path.write_text("whsec_new\nwhsec_old\n")
    assert secrets.resolve("S", {"S_FILE": str(path)}) == ("whsec_new", "whsec_old")


def test_file_reference_in_the_value(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("from-file\n")
    assert secrets.resolve("S", {"S": f"file:{path}"}) == ("from-file",)
    assert secrets.resolve("S", {"S": f"inline, file:{path}"}) == ("inline", "from-file")


def test_variable_and_file_variable_together_is_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("x")
    with pytest.raises(errors.ConfigError, match="set either S or S_FILE, not both"):
        secrets.resolve("S", {"S": "a", "S_FILE": str(path)})


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"S: cannot read secret file '.*nope'"):
        secrets.resolve("S", {"S_FILE": str(tmp_path / "nope")})
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    with pytest.raises(errors.ConfigError, match="resolves to no secret"):
        secrets.resolve("S", {"S_FILE": str(empty)})
    big = tmp_path / "big"
    big.write_bytes(b"x" * (secrets.MAX_FILE_BYTES + 1))
    with pytest.raises(errors.ConfigError, match="larger than"):
        secrets.resolve("S", {"S": f"file:{big}"})
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(errors.ConfigError, match="not UTF-8"):
        secrets.resolve("S", {"S": f"file:{binary}"})


# --- AWS Secrets Manager (moto) -------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def test_aws_secrets_manager_by_name_arn_and_json_key(aws: object) -> None:
    client: object = aws
    created = client.create_secret(Name="billing/webhook", SecretString="sm-secret")  # type: ignore[attr-defined]
    client.create_secret(  # type: ignore[attr-defined]
        Name="stripe", SecretString=json.dumps({"webhook": "whsec_a,whsec_b", "n": 1})
    )
    env = {"AWS_REGION": "eu-west-1"}
    assert secrets.resolve("S", {**env, "S": "aws-sm:billing/webhook"}) == ("sm-secret",)
    assert secrets.resolve("S", {"S": created["ARN"]}) == ("sm-secret",)  # region from the ARN
    assert secrets.resolve("S", {**env, "S": "aws-sm:stripe#webhook"}) == ("whsec_a", "whsec_b")
    with pytest.raises(errors.ConfigError, match="no text field 'n'"):
        secrets.resolve("S", {**env, "S": "aws-sm:stripe#n"})
    with pytest.raises(errors.ConfigError, match="not JSON"):
        secrets.resolve("S", {**env, "S": "aws-sm:billing/webhook#key"})


def test_aws_missing_secret_names_the_error_code_not_a_value(aws: object) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        secrets.resolve("S", {"AWS_REGION": "eu-west-1", "S": "aws-sm:nope"})
    assert str(caught.value) == "S: AWS Secrets Manager secret 'nope': ResourceNotFoundException"


def test_aws_rotation_is_picked_up_by_refreshing(aws: object) -> None:
    client: object = aws
    client.create_secret(Name="wh", SecretString="v1")  # type: ignore[attr-defined]
    now = [0.0]
    r = secrets.Refreshing(
        "S", {"AWS_REGION": "eu-west-1", "S": "aws-sm:wh"}, ttl_seconds=60, clock=lambda: now[0]
    )
    assert r.current() == ("v1",)
    client.put_secret_value(SecretId="wh", SecretString="v2,v1")  # type: ignore[attr-defined]
    assert r.current() == ("v1",)  # still within the TTL
    now[0] = 61
    assert r.current() == ("v2", "v1")  # no event loop here: refreshed in place


# --- Doppler and 1Password CLIs ---------------------------------------------------------------


def _fake_cli(folder: Path, name: str, script: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def _path_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", **extra}


def test_doppler_cli(bin_dir: Path) -> None:
    log = bin_dir / "args"
    _fake_cli(bin_dir, "doppler", f'echo "$@" >> {log}\nprintf "dp-secret\\n"\n')
    env = _path_env(bin_dir, S="doppler:STRIPE_WEBHOOK_SECRET")
    assert secrets.resolve("S", env) == ("dp-secret",)
    env = _path_env(bin_dir, S="doppler:shop/prd/STRIPE_WEBHOOK_SECRET")
    assert secrets.resolve("S", env) == ("dp-secret",)
    assert log.read_text().splitlines() == [
        "secrets get STRIPE_WEBHOOK_SECRET --plain",
        "secrets get STRIPE_WEBHOOK_SECRET --plain --project shop --config prd",
    ]
    with pytest.raises(errors.ConfigError, match="doppler:NAME or doppler:PROJECT/CONFIG/NAME"):
        secrets.resolve("S", _path_env(bin_dir, S="doppler:a/b"))
    with pytest.raises(errors.ConfigError, match="not a Doppler secret name"):
        secrets.resolve("S", _path_env(bin_dir, S="doppler:has-dash"))


def test_one_password_cli(bin_dir: Path) -> None:
    _fake_cli(
        bin_dir,
        "op",
        '[ "$1" = read ] && [ "$2" = --no-newline ] && [ "$3" = "op://Ops/Stripe/webhook" ] '
        "&& printf 'op-new,op-old' && exit 0\nexit 9\n",
    )
    env = _path_env(bin_dir, S="op://Ops/Stripe/webhook")
    assert secrets.resolve("S", env) == ("op-new", "op-old")


def test_missing_cli_is_a_clear_config_error(bin_dir: Path) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        secrets.resolve("S", _path_env(bin_dir, S="doppler:X"))
    assert "the Doppler CLI ('doppler') is not installed or not on PATH" in str(caught.value)
    with pytest.raises(errors.ConfigError, match=r"the 1Password CLI \('op'\) is not installed"):
        secrets.resolve("S", _path_env(bin_dir, S="op://v/i/f"))


def test_failing_cli_shows_stderr_never_stdout(bin_dir: Path) -> None:
    _fake_cli(bin_dir, "op", "printf 'half-a-secret'\necho 'not signed in' >&2\nexit 1\n")
    with pytest.raises(errors.ConfigError) as caught:
        secrets.resolve("S", _path_env(bin_dir, S="op://v/i/f"))
    message = str(caught.value)
    assert message == "S: `op read --no-newline` failed (exit 1): not signed in"
    assert "half-a-secret" not in message


def test_ttl_setting() -> None:
    assert secrets.ttl({}) == 60.0
    assert secrets.ttl({"SOLO_OS_SECRET_TTL": "5"}) == 5.0
    assert secrets.ttl({"SOLO_OS_SECRET_TTL": "0"}) == 0.0
    for bad in ("-1", "soon", "100000"):
        with pytest.raises(errors.ConfigError, match="SOLO_OS_SECRET_TTL"):
            secrets.ttl({"SOLO_OS_SECRET_TTL": bad})


# --- staying current: rotation without a restart ---------------------------------------------


class Counting:
    """A resolver that reads a mutable value and counts calls (optionally slow)."""

    def __init__(self, value: str, delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    def __call__(self, secret_env: str, env: Mapping[str, str]) -> tuple[str, ...]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.value == "boom":
            raise errors.ConfigError(f"{secret_env}: provider down")
        return secrets.split_secrets(self.value)


def test_plain_values_are_static_and_never_resolved_again() -> None:
    resolver = Counting("a")
    now = [0.0]
    r = secrets.Refreshing("S", {"S": "a"}, ttl_seconds=1, resolver=resolver, clock=lambda: now[0])
    assert r.static
    now[0] = 100
    assert r.current() == ("a",)
    assert resolver.calls == 1


def test_file_secrets_are_not_static(tmp_path: Path) -> None:
    assert not secrets.is_static("S", {"S_FILE": "/x"})
    assert not secrets.is_static("S", {"S": "a,aws-sm:x"})
    assert secrets.is_static("S", {"S": "a,b"})


async def test_refresh_runs_off_the_event_loop_and_returns_the_old_value_meanwhile(
    tmp_path: Path,
) -> None:
    resolver = Counting("old", delay=0.5)
    now = [0.0]
    r = secrets.Refreshing("S", {"S_FILE": "x"}, ttl_seconds=60, resolver=resolver, clock=lambda: now[0])
    resolver.value = "new,old"
    now[0] = 61
    t0 = time.perf_counter()
    assert r.current() == ("old",)  # due: a refresh starts in a thread, the old value serves
    assert r.current() == ("old",)  # one refresh at a time
    assert time.perf_counter() - t0 < 0.2  # nobody waited for the slow provider
    for _ in range(100):
        if r.current() == ("new", "old"):
            break
        await asyncio.sleep(0.02)
    assert r.current() == ("new", "old")
    assert resolver.calls == 2


async def test_a_failed_refresh_keeps_the_last_good_secrets_and_logs_no_value() -> None:
    resolver = Counting("good-secret")
    now = [0.0]
    r = secrets.Refreshing("S", {"S": "aws-sm:x"}, ttl_seconds=10, resolver=resolver, clock=lambda: now[0])
    resolver.value = "boom"
    now[0] = 11
    with capture_logs() as logs:
        assert r.current() == ("good-secret",)
        for _ in range(100):
            if r.refreshes or any(e["event"] == "secret.refresh_failed" for e in logs):
                break
            await asyncio.sleep(0.02)
    assert r.current() == ("good-secret",)
    failed = [e for e in logs if e["event"] == "secret.refresh_failed"]
    assert failed and failed[0]["secret_env"] == "S" and "provider down" in failed[0]["error"]
    assert "good-secret" not in repr(logs)


def test_a_refreshed_value_that_fails_the_source_check_is_not_adopted() -> None:
    resolver = Counting("whsec_ok")
    now = [0.0]
    r = secrets.Refreshing(
        "S",
        {"S_FILE": "x"},
        ttl_seconds=1,
        resolver=resolver,
        clock=lambda: now[0],
        check=lambda values: None if all(v.startswith("whsec_") for v in values) else "bad form",
    )
    resolver.value = "plain"
    now[0] = 2
    assert r.current() == ("whsec_ok",)
    with pytest.raises(errors.ConfigError, match="S: bad form"):
        secrets.Refreshing("S", {"S_FILE": "x"}, resolver=resolver, check=lambda v: "bad form")


def test_new_secrets_are_added_to_the_log_redactor() -> None:
    resolver = Counting("redact-me-0001")
    now = [0.0]
    r = secrets.Refreshing("S", {"S_FILE": "x"}, ttl_seconds=1, resolver=resolver, clock=lambda: now[0])
    resolver.value = "redact-me-0002"
    now[0] = 5
    r.current()
    event = slog.redactor(None, "info", {"msg": "x redact-me-0001 y redact-me-0002"})
    assert event["msg"] == "x [redacted] y [redacted]"


# --- wired into sources: Source.bind and verification -----------------------------------------


def _signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_source_picks_up_a_rotated_file_secret_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "billing"
    path.write_text("old-secret-000\n")
    source = sources.hmac(secret_env="BILLING_WEBHOOK_SECRET")
    env = {"BILLING_WEBHOOK_SECRET_FILE": str(path), "SOLO_OS_SECRET_TTL": "0.2"}
    assert source.bind("billing", env) == []
    body = b'{"ok": true}'

    def check(secret: str) -> bool:
        headers = sources.DictHeaders({"x-signature": _signature(body, secret)})
        try:
            source.authenticate(headers, body, time.time())
        except errors.SignatureError:
            return False
        return True

    assert check("old-secret-000") and not check("new-secret-000")
    path.write_text("new-secret-000\nold-secret-000\n")  # the overlap: both valid

    async def settled(expect_new: bool) -> None:
        for _ in range(200):
            if check("new-secret-000") == expect_new:
                return
            await asyncio.sleep(0.02)

    await settled(True)
    assert check("new-secret-000") and check("old-secret-000")
    path.write_text("new-secret-000\n")  # the overlap ends
    for _ in range(200):
        if not check("old-secret-000"):
            break
        await asyncio.sleep(0.02)
    assert check("new-secret-000") and not check("old-secret-000")


def test_bind_reports_resolution_problems_without_values(tmp_path: Path) -> None:
    source = sources.hmac(secret_env="BILLING_WEBHOOK_SECRET")
    assert source.bind("billing", {}) == [
        "BILLING_WEBHOOK_SECRET: not set; source 'billing' refuses to start without its secret"
    ]
    problems = source.bind("billing", {"BILLING_WEBHOOK_SECRET": f"file:{tmp_path / 'x'}"})
    assert len(problems) == 1 and "cannot read secret file" in problems[0]
    (tmp_path / "ok").write_text("s3cr3t-value")
    assert source.bind("billing", {"BILLING_WEBHOOK_SECRET_FILE": str(tmp_path / "ok")}) == []
    assert source.secrets == ("s3cr3t-value",)
    assert "s3cr3t-value" not in repr(source)
