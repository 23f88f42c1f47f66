"""The Lambda entry point with synthetic function-URL events (payload format 2.0).

The handler is called as AWS calls it: synchronously, once per event, with the container
kept between calls. The app is the repository's billing example; secrets come from the
environment or from Secrets Manager (moto).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from solo_os import aws_lambda, errors
from solo_os import store as store_mod
from tests.helpers import SECRET, invoice, sign

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "billing" / "app.py"


def function_url_event(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a Lambda function URL hands the function (payload format version 2.0)."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": "abcdefghij.lambda-url.eu-west-1.on.aws",
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "Stripe/1.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


class FakeContext:
    function_name = "solo-os-ingress"
    memory_limit_in_mb = 512
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def delivery_event(payload: dict[str, Any], key: str, secret: str = SECRET) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return function_url_event(
        "POST",
        "/webhooks/billing",
        body,
        {
            "content-type": "application/json",
            "x-signature": sign(body, secret),
            "x-event-type": "invoice.paid",
            "x-idempotency-key": key,
        },
    )


def call(event: dict[str, Any]) -> tuple[int, Any]:
    response = aws_lambda.handler(event, FakeContext())
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body) if body else None


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("SOLO_OS_APP", str(APP))
    monkeypatch.setenv("LOG_LEVEL", "warn")
    monkeypatch.delenv("BILLING_WEBHOOK_SECRET_FILE", raising=False)
    # The real configure() caches every module's logger at its level for the rest of the
    # session (cache_logger_on_first_use), which would hide later tests' logs: record the call.
    monkeypatch.setattr(aws_lambda.slog, "configure", lambda *args: CONFIGURED.append(args))
    try:
        yield
    finally:
        aws_lambda.shutdown()


CONFIGURED: list[tuple[Any, ...]] = []


def stored_events(database_url: str) -> list[Any]:
    async def go() -> list[Any]:
        s = store_mod.connect(database_url)
        try:
            return await s.list_events(store_mod.Filters(limit=0))
        finally:
            await s.close()

    return asyncio.run(go())


def test_a_signed_delivery_is_accepted_and_stored(
    lambda_env: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    key = f"evt-{uuid.uuid4()}"
    status, body = call(delivery_event(invoice(), key))
    assert status == 200, body
    assert body["status"] == "accepted" and body["executions"] == 2
    assert CONFIGURED[-1] == ("warn", "json", "billing")  # logging set up once, from the settings
    first_container = aws_lambda._container
    # a warm invocation: same container, same runtime; a redelivery is a duplicate
    status, again = call(delivery_event(invoice(), key))
    assert aws_lambda._container is first_container
    assert (status, again) == (200, {"status": "duplicate", "event_id": body["event_id"]})
    status, bad = call(delivery_event(invoice(), "other", secret="wrong-secret-000000"))
    assert (status, bad) == (401, {"error": "invalid_signature"})
    status, ready = call(function_url_event("GET", "/readyz"))
    assert status == 200 and ready["status"] == "ready"
    status, missing = call(function_url_event("POST", "/webhooks/nope", b"{}"))
    assert (status, missing) == (404, {"error": "unknown_source"})
    aws_lambda.shutdown()
    (event,) = stored_events(database_url)
    assert (str(event.id), event.idempotency_key, event.status) == (body["event_id"], key, "accepted")


def test_an_unmigrated_database_answers_503_until_it_is_upgraded(
    lambda_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    status, body = call(delivery_event(invoice(), "k1"))
    assert (status, body) == (503, {"error": "unavailable"})
    assert aws_lambda._container is None  # the next invocation tries again

    async def upgrade() -> None:
        s = store_mod.connect(url)
        try:
            await s.migrate()
        finally:
            await s.close()

    asyncio.run(upgrade())
    status, body = call(delivery_event(invoice(), "k1"))
    assert status == 200 and body["status"] == "accepted"


def test_a_missing_secret_answers_503_and_never_serves_unverified(
    lambda_env: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.delenv("BILLING_WEBHOOK_SECRET", raising=False)
    assert call(delivery_event(invoice(), "k")) == (503, {"error": "unavailable"})


def test_secrets_and_the_database_url_from_secrets_manager(
    lambda_env: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        webhook = sm.create_secret(Name="solo-os/BILLING_WEBHOOK_SECRET", SecretString=SECRET)
        db = sm.create_secret(Name="solo-os/database", SecretString=json.dumps({"url": database_url}))
        monkeypatch.setenv("BILLING_WEBHOOK_SECRET", f"aws-sm:{webhook['ARN']}")
        monkeypatch.setenv("DATABASE_URL", f"aws-sm:{db['ARN']}#url")
        status, body = call(delivery_event(invoice(), "sm-1"))
        assert status == 200 and body["status"] == "accepted", body
        assert aws_lambda.os.environ["DATABASE_URL"] == database_url
    aws_lambda.shutdown()
    assert [e.idempotency_key for e in stored_events(database_url)] == ["sm-1"]


def test_resolve_references_leaves_plain_values_alone() -> None:
    env = {"A": "plain", "B": "file:/nope"}
    aws_lambda.resolve_references(env, ("A", "C"))
    assert env == {"A": "plain", "B": "file:/nope"}
    with pytest.raises(errors.ConfigError, match="cannot read secret file"):
        aws_lambda.resolve_references(env, ("B",))
    several = {"X": "file:/a"}
    with pytest.raises(errors.ConfigError, match="exactly one value"):
        aws_lambda.resolve_references(several, ("X",), resolve=lambda n, e: ("a", "b"))


def test_the_handler_path_the_terraform_names_is_importable() -> None:
    import importlib

    module, _, attr = "solo_os.aws_lambda.handler".rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))
