"""Alerts end to end: a local HTTP server (Slack-style and JSON webhooks) and a local SMTP
server (aiosmtpd) receive them, a channel that fails first is retried, a burst of 100 dead
executions is one deduplicated alert, and no secret reaches a message, a log or the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from solo_os import App, ConfigError, Context, NonRetryable, alerts, sources
from solo_os import store as store_mod
from solo_os.runtime import alerter as alerter_mod
from solo_os.store import _alerts as outbox
from solo_os.store import _schema
from tests import helpers

SLACK_TOKEN = "T0000/B0000/xoxSLACKSECRET42"
HOOK_SECRET = "hook-signing-secret-123456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeHttp:
    """Answers 500 to the first ``fail_first`` requests of each path, then 200."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def ok(self, path: str) -> list[Received]:
        seen = [r for r in self.requests if r.path == path]
        return seen[self.fail_first :]


@pytest.fixture
def http_server() -> Iterator[FakeHttp]:
    state = FakeHttp()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
                n = sum(1 for r in state.requests if r.path == self.path)
            self.send_response(500 if n <= state.fail_first else 200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FakeSmtp:
    fail_first: int = 0
    attempts: int = 0
    messages: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return "451 4.3.0 try again later"
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    handler = FakeSmtp()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def failing_app(smtp: FakeSmtp, *, group_wait: float = 3.0) -> App:
    app = App(service="billing")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    gate = asyncio.Event()
    app.gate = gate  # type: ignore[attr-defined]

    @app.on("billing", "invoice.paid")
    async def fulfil(event: dict[str, Any], ctx: Context) -> None:
        await gate.wait()
        raise NonRetryable(f"card declined for {event['n']}")

    app.alerts(
        alerts.slack(url_env="SLACK_URL"),
        alerts.webhook(url_env="HOOK_URL", secret_env="HOOK_SECRET"),
        alerts.email(to=["ops@example.com"], sender="solo-os@example.com", host="127.0.0.1",
                     port=smtp.port, security="none"),
        group_wait=timedelta(seconds=group_wait),
    )
    return app


def env_for(http: FakeHttp) -> dict[str, str]:
    return {
        "BILLING_WEBHOOK_SECRET": helpers.SECRET,
        "SLACK_URL": f"http://127.0.0.1:{http.port}/services/{SLACK_TOKEN}",
        "HOOK_URL": f"http://127.0.0.1:{http.port}/hook",
        "HOOK_SECRET": HOOK_SECRET,
    }


async def test_a_burst_of_100_dead_executions_is_one_alert_on_every_channel_retried(
    database_url: str, http_server: FakeHttp, smtp_server: FakeSmtp
) -> None:
    http_server.fail_first = 2  # each HTTP channel is down for two attempts
    smtp_server.fail_first = 1  # the mail server defers the first message
    app = failing_app(smtp_server)
    with capture_logs() as logs:
        async with helpers.running(app, database_url, env=env_for(http_server), concurrency=128) as h:
            sem = asyncio.Semaphore(20)

            async def send(i: int) -> str:
                async with sem:
                    r = await h.post("billing", {"n": i}, key=f"inv-{i}")
                    assert r.status_code == 200
                    return str(r.json()["event_id"])

            await asyncio.gather(*(send(i) for i in range(100)))
            app.gate.set()  # type: ignore[attr-defined]

            async def delivered() -> bool:
                return (
                    len(http_server.ok("/hook")) >= 1
                    and len(http_server.ok(f"/services/{SLACK_TOKEN}")) >= 1
                    and len(smtp_server.messages) >= 1
                )

            await helpers.eventually(delivered, timeout=60, interval=0.2)
            await asyncio.sleep(1.5)  # nothing more arrives
            dead = await h.store.list_executions(store_mod.Filters(status="dead", limit=0))
            stored = await h.store.list_alerts()
            deliveries = await _deliveries(h.store)
    assert len(dead) == 100
    # one alert, one message per channel, after the failed attempts
    assert len(stored) == 1 and stored[0].total == 100 and stored[0].kind == "dead"
    assert stored[0].deliveries == {"slack": "sent", "webhook": "sent", "email": "sent"}
    assert [r.path for r in http_server.requests].count("/hook") == 3
    assert len(http_server.ok("/hook")) == 1 and len(http_server.ok(f"/services/{SLACK_TOKEN}")) == 1
    assert smtp_server.attempts == 2 and len(smtp_server.messages) == 1
    assert {d["channel"]: d["attempts"] for d in deliveries} == {"slack": 3, "webhook": 3, "email": 2}

    ids = {str(x.id) for x in dead}
    correlation_ids = {x.correlation_id for x in dead}
    hook = http_server.ok("/hook")[0]
    payload = json.loads(hook.body)
    assert payload["count"] == 100 and payload["kind"] == "dead" and payload["subject"] == "fulfil"
    assert payload["title"] == "[billing] 100 executions of fulfil went dead"
    sample = payload["samples"][0]
    assert sample["execution_id"] in ids and sample["correlation_id"] in correlation_ids
    assert sample["handler"] == "fulfil" and "card declined for" in sample["error"]
    assert f"solo-os executions show {sample['execution_id']}" in payload["commands"]
    # the JSON webhook is signed with its secret
    t, v1 = (part.split("=", 1)[1] for part in hook.headers["x-solo-os-signature"].split(","))
    expected = hmac.new(HOOK_SECRET.encode(), f"{t}.".encode() + hook.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)

    slack = json.loads(http_server.ok(f"/services/{SLACK_TOKEN}")[0].body)
    assert "100 executions of fulfil went dead" in slack["text"]
    assert "solo-os executions show" in slack["text"] and "card declined" in slack["text"]

    mail = message_from_bytes(smtp_server.messages[0])
    assert mail["Subject"] == "[billing] 100 executions of fulfil went dead"
    assert mail["To"] == "ops@example.com"
    text = mail.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert b"\n  solo-os dlq list --handler fulfil\n" in text.replace(b"\r\n", b"\n")

    # no secret anywhere: messages, logs, stored alerts and delivery errors
    everything = b"".join(r.body for r in http_server.requests) + b"".join(smtp_server.messages)
    everything += json.dumps(logs, default=str).encode()
    everything += json.dumps([a.samples for a in stored] + deliveries, default=str).encode()
    for secret in (SLACK_TOKEN, HOOK_SECRET):
        assert secret.encode() not in everything
    assert any(e["event"] == "alert.retrying" for e in logs)
    assert sum(1 for e in logs if e["event"] == "alert.sent") == 3


async def _deliveries(store: store_mod.Store) -> list[dict[str, Any]]:
    ad = _schema.alert_deliveries
    async with store._read() as conn:
        rows = await conn.execute(sa.select(ad.c.channel, ad.c.attempts, ad.c.status, ad.c.last_error))
        return [dict(r._mapping) for r in rows]


# --- the outbox's rules, with an injected clock ----------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = outbox.AlertPolicy(window=timedelta(minutes=5), group_wait=timedelta(seconds=10))


def occurrence(i: int, at: datetime, key: str = "dead:fulfil") -> outbox.Occurrence:
    return outbox.Occurrence(
        key=key, kind="dead", subject="fulfil", source=f"dead:{i}:1", at=at,
        details={"execution_id": str(UUID(int=i)), "correlation_id": f"c-{i}", "error": "boom"},
    )


async def test_occurrences_fold_into_one_alert_per_key_per_window(store: store_mod.Store) -> None:
    for i in range(100):
        await store.record_occurrences([occurrence(i, NOW + timedelta(milliseconds=i))], NOW, POLICY)
    assert await store.record_occurrences([occurrence(7, NOW)], NOW, POLICY) == 0  # same source
    await store.record_occurrences([occurrence(1000, NOW, key="dead:audit")], NOW, POLICY)
    assert await store.close_alerts(NOW + timedelta(seconds=9), ["c"]) == 0  # still gathering
    assert await store.close_alerts(NOW + timedelta(seconds=10), ["c"]) == 2
    by_key = {a.key: a for a in await store.list_alerts()}
    assert by_key["dead:fulfil"].total == 100 and by_key["dead:audit"].total == 1
    assert by_key["dead:fulfil"].samples is not None and len(by_key["dead:fulfil"].samples) == 5
    # more failures after the alert went out: held until a window after the previous one
    later = NOW + timedelta(minutes=1)
    await store.record_occurrences([occurrence(200, later), occurrence(201, later)], later, POLICY)
    assert await store.close_alerts(later + timedelta(minutes=3), ["c"]) == 0
    assert await store.close_alerts(NOW + timedelta(seconds=10) + POLICY.window, ["c"]) == 1
    totals = sorted(a.total for a in await store.list_alerts() if a.key == "dead:fulfil")
    assert totals == [2, 100]


async def test_deliveries_are_claimed_once_and_retried_with_backoff(
    database_url: str, store: store_mod.Store
) -> None:
    other = store_mod.connect(database_url)
    try:
        await store.record_occurrences([occurrence(1, NOW)], NOW, POLICY)
        await store.close_alerts(NOW + timedelta(seconds=10), ["a", "b"])
        at = NOW + timedelta(seconds=11)
        first, second = await asyncio.gather(
            store.claim_deliveries(at, 10, timedelta(seconds=60)),
            other.claim_deliveries(at, 10, timedelta(seconds=60)),
        )
        assert sorted(d.channel for d in first + second) == ["a", "b"]  # each claimed once
        for d in first + second:
            await store.finish_delivery(
                d.alert.id, d.channel, d.attempt, at, error="HTTP 503", retry_at=at + timedelta(seconds=4)
            )
        assert await store.claim_deliveries(at + timedelta(seconds=3), 10, timedelta(seconds=60)) == []
        again = await store.claim_deliveries(at + timedelta(seconds=4), 10, timedelta(seconds=60))
        assert sorted((d.channel, d.attempt) for d in again) == [("a", 2), ("b", 2)]
        # a claimer that died: its lease runs out and the delivery is claimed again
        lost = await store.claim_deliveries(at + timedelta(seconds=65), 10, timedelta(seconds=60))
        assert sorted((d.channel, d.attempt) for d in lost) == [("a", 3), ("b", 3)]
        # the late answer of the lost attempt changes nothing
        await store.finish_delivery(again[0].alert.id, again[0].channel, 2, at + timedelta(seconds=66))
        assert (await store.list_alerts())[0].deliveries == {"a": "sending", "b": "sending"}
    finally:
        await other.close()


async def test_the_dead_scan_counts_each_death_once_and_catches_late_commits(
    database_url: str, store: store_mod.Store
) -> None:
    app = App(service="scan")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job")
    def job(event: dict[str, Any], ctx: Context) -> None:
        raise NonRetryable("nope")

    async with helpers.running(app, database_url, roles=("serve",)) as h:
        for i in range(3):
            assert (await h.post("billing", {"i": i}, event_type="job", key=f"k{i}")).status_code == 200
        now = datetime.now(UTC)
        ex = _schema.executions
        async with store._write() as conn:  # they die, one of them "committed late" (older stamp)
            await conn.execute(sa.update(ex).values(status="dead", attempts=1, updated_at=now))
        assert await store.scan_dead(now + timedelta(seconds=1), POLICY) == 3
        assert await store.scan_dead(now + timedelta(seconds=2), POLICY) == 0  # re-read, not recounted
        late = await h.post("billing", {"i": 9}, event_type="job", key="k9")
        async with store._write() as conn:
            await conn.execute(
                sa.update(ex)
                .where(ex.c.event_id == UUID(late.json()["event_id"]))
                .values(status="dead", attempts=1, updated_at=now - timedelta(seconds=30))
            )
        assert await store.scan_dead(now + timedelta(seconds=3), POLICY) == 1
    alerts_ = await store.list_alerts()
    assert len(alerts_) == 1 and alerts_[0].total == 4


class _Highest(random.Random):
    """Every draw at the top of its range: the backoff at its longest."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_a_delivery_gives_up_after_its_time_and_says_so(
    database_url: str, store: store_mod.Store, http_server: FakeHttp
) -> None:
    http_server.fail_first = 1000
    clock = [NOW]
    app = App(service="billing")
    app.alerts(alerts.webhook(url_env="HOOK_URL"), group_wait=timedelta(0))
    app._settings = helpers.settings_for(database_url)
    app.prepare({"HOOK_URL": f"http://127.0.0.1:{http_server.port}/hook"})
    alerter = alerter_mod.Alerter(
        app, store, clock=lambda: clock[0], base_delay=1.0, give_up_after=timedelta(seconds=30),
        rng=_Highest(),
    )
    await store.record_occurrences([occurrence(1, NOW)], NOW, alerter.policy)
    with capture_logs() as logs:
        for step in range(40):
            clock[0] = NOW + timedelta(seconds=step)
            await alerter.run_once()
    statuses = (await store.list_alerts())[0].deliveries
    assert statuses == {"webhook": "failed"}
    tries = len(http_server.requests)
    # jitter at its top: tries at 0, 1, 3, 7 and 15 s, then (31 s being past the 30 s limit)
    # one last try at the limit itself
    assert tries == 6
    assert [e["event"] for e in logs].count("alert.failed") == 1


def test_missing_channel_secrets_stop_the_start_naming_the_variable() -> None:
    app = App()
    app.alerts(alerts.slack(url_env="SLACK_URL"), alerts.webhook(url_env="HOOK_URL", secret_env="HOOK_KEY"),
               alerts.email(to="me@example.com", username_env="SMTP_USER", password_env="SMTP_PASS"))
    with pytest.raises(ConfigError) as caught:
        app.prepare({"HOOK_URL": "ftp://nope", "SMTP_USER": "u"})
    text = str(caught.value)
    for name in ("SLACK_URL is not set", "HOOK_URL is not an http(s) URL", "HOOK_KEY is not set",
                 "SMTP_PASS is not set"):
        assert name in text
    assert "ftp://nope" not in text
    with pytest.raises(ConfigError, match="given twice"):
        App().alerts(alerts.slack(), alerts.slack())
    with pytest.raises(ConfigError, match="email addresses"):
        alerts.email(to=["not-an-address"])
    assert "hooks.slack" not in repr(alerts.slack())
