"""``ctx.http`` against a real local HTTP server: retries, timeouts, Retry-After, headers,
idempotency keys, logs. No store here (no rate limits); see test_http_runtime for those."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from solo_os import errors
from solo_os.core import ratelimit
from solo_os.observability import tracing
from solo_os.outbound import http
from solo_os.outbound import options as options_mod
from tests.apps.http_app import Target

EXECUTION = uuid.UUID("0190f0c4-7b2e-7c3a-9f00-000000000001")


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target().start()
    yield server
    server.stop()


async def client_for(**options: Any) -> http.Client:
    client = http.Client(options=options_mod.HttpOptions(**options), rng=random.Random(42))
    await client.start()
    return client


@pytest.fixture
async def client() -> AsyncIterator[http.Client]:
    c = await client_for(backoff=0.05, max_backoff=1.0)
    yield c
    await c.aclose()


def session(c: http.Client, execution_id: uuid.UUID = EXECUTION) -> http.Session:
    return c.session(execution_id=execution_id, correlation_id="corr-123")


def gaps(seen: list[Any]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(seen)]


# --- retries -------------------------------------------------------------------------------------


async def test_5xx_is_retried_with_backoff_until_it_succeeds(target: Target) -> None:
    c = await client_for(backoff=0.2, max_backoff=1.0, retries=3)
    target.script("/flaky", (503, {}), (500, {}))
    r = await session(c).get(f"{target.url}/flaky")
    await c.aclose()
    assert r.status_code == 200
    seen = target.requests("/flaky")
    assert len(seen) == 3
    # the same seed gives the same full-jitter delays: ceilings 0.2 then 0.4
    rng = random.Random(42)
    expected = [ratelimit.backoff(1, 0.2, 1.0, rng), ratelimit.backoff(2, 0.2, 1.0, rng)]
    for got, want in zip(gaps(seen), expected, strict=True):
        assert got >= want - 0.01


async def test_5xx_retries_are_bounded_and_the_last_answer_is_returned(
    target: Target, client: http.Client
) -> None:
    target.script("/down", (502, {}), (502, {}), (502, {}), (502, {}))
    r = await session(client).get(f"{target.url}/down")
    assert r.status_code == 502
    assert len(target.requests("/down")) == 3  # retries=3 tries, not more


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_4xx_and_501_are_not_retried(target: Target, client: http.Client, status: int) -> None:
    target.script("/no", (status, {}))
    r = await session(client).post(f"{target.url}/no", json={})
    assert r.status_code == status
    assert len(target.requests("/no")) == 1


async def test_a_post_is_retried_with_the_same_idempotency_key(target: Target, client: http.Client) -> None:
    target.script("/charge", (502, {}), (500, {}))
    r = await session(client).post(f"{target.url}/charge", json={"amount": 100})
    assert r.status_code == 200
    keys = [s.headers["idempotency-key"] for s in target.requests("/charge")]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert {s.body for s in target.requests("/charge")} == {b'{"amount":100}'}


async def test_a_post_without_idempotency_key_is_not_retried_after_a_5xx(
    target: Target, client: http.Client
) -> None:
    target.script("/charge", (500, {}))
    r = await session(client).post(f"{target.url}/charge", json={}, idempotency_key=False)
    assert r.status_code == 500
    (only,) = target.requests("/charge")
    assert "idempotency-key" not in only.headers


async def test_connection_errors_are_retried_then_raised(client: http.Client) -> None:
    with socket_closed() as url, capture_logs() as logs, pytest.raises(httpx.ConnectError):
        await session(client).post(f"{url}/charge", json={})
    calls = [e for e in logs if e["event"] == "http.call"]
    assert [e["attempt"] for e in calls] == [1, 2, 3]
    assert all(e["error"] == "ConnectError" for e in calls)
    assert calls[-1]["retry_in"] is None


class socket_closed:
    """A URL on a port nobody listens on."""

    def __enter__(self) -> str:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        return None


# --- timeouts ----------------------------------------------------------------------------------


async def test_a_slow_server_times_out_by_default_settings(target: Target) -> None:
    c = await client_for(timeout=0.3, retries=2, backoff=0.0)
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await session(c).get(f"{target.url}/slow?s=5")
    elapsed = time.monotonic() - t0
    await c.aclose()
    assert 0.55 <= elapsed < 2.0  # two tries of 0.3 s each, not the server's 5 s
    assert len(target.requests("/slow")) == 2


async def test_a_timeout_can_be_set_per_call(target: Target, client: http.Client) -> None:
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await session(client).get(f"{target.url}/slow?s=5", timeout=0.2, retries=1)
    assert time.monotonic() - t0 < 1.0
    r = await session(client).get(f"{target.url}/slow?s=0.3", timeout=2)
    assert r.status_code == 200


def test_the_default_timeout_is_ten_seconds() -> None:
    assert options_mod.HttpOptions().timeout == 10.0


# --- Retry-After -------------------------------------------------------------------------------


async def test_a_short_retry_after_is_waited_for_inside_the_call(target: Target, client: http.Client) -> None:
    target.script("/busy", (429, {"Retry-After": "1"}))
    t0 = time.monotonic()
    r = await session(client).get(f"{target.url}/busy")
    assert r.status_code == 200
    seen = target.requests("/busy")
    assert len(seen) == 2 and gaps(seen)[0] >= 0.99
    assert time.monotonic() - t0 >= 1.0


async def test_an_http_date_retry_after_on_503_is_honoured(target: Target, client: http.Client) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    target.script("/busy", (503, {"Retry-After": when}))
    r = await session(client).get(f"{target.url}/busy")
    assert r.status_code == 200
    assert gaps(target.requests("/busy"))[0] >= 0.9  # whole seconds in a date


async def test_a_retry_after_longer_than_the_call_may_wait_defers_the_execution(
    target: Target,
) -> None:
    c = await client_for(max_wait=5)
    target.script("/busy", (429, {"Retry-After": "120"}))
    t0 = time.monotonic()
    with pytest.raises(errors.RetryAfter) as caught:
        await session(c).post(f"{target.url}/busy?token=abc", json={})
    await c.aclose()
    assert time.monotonic() - t0 < 1
    assert caught.value.seconds == pytest.approx(120)
    assert not isinstance(caught.value, errors.RateLimited)  # a request was sent: it counts
    assert "POST 127.0.0.1" in str(caught.value) and "/busy" in str(caught.value)
    assert "token" not in str(caught.value)
    assert len(target.requests("/busy")) == 1


async def test_a_429_without_retry_after_is_retried_with_backoff(target: Target, client: http.Client) -> None:
    target.script("/busy", (429, {}))
    r = await session(client).post(f"{target.url}/busy", json={})
    assert r.status_code == 200
    assert len(target.requests("/busy")) == 2


# --- headers and keys --------------------------------------------------------------------------


async def test_outgoing_headers(target: Target, client: http.Client) -> None:
    await session(client).post(f"{target.url}/h", json={}, headers={"X-Correlation-Id": "mine"})
    await session(client).get(f"{target.url}/h")
    mine, ours = target.requests("/h")
    assert mine.headers["x-correlation-id"] == "mine"  # the caller's own wins
    assert ours.headers["x-correlation-id"] == "corr-123"
    assert ours.headers["user-agent"] == "solo-os"
    assert "idempotency-key" in mine.headers and "idempotency-key" not in ours.headers


async def test_traceparent_goes_out_within_a_trace(
    target: Target, client: http.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tracer of its own: the global provider is not this test's to set.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("solo_os"))
    with tracing.span("execute test") as parent:
        await session(client).get(f"{target.url}/traced?secret=1")
    trace_id = format(parent.get_span_context().trace_id, "032x")
    (seen,) = target.requests("/traced")
    assert seen.headers["traceparent"].split("-")[1] == trace_id
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "HTTP GET"]
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["url.path"] == "/traced"
    assert "secret" not in str(dict(span.attributes))
    assert seen.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


async def test_idempotency_keys_are_stable_per_execution_step_url_and_order(
    target: Target, client: http.Client
) -> None:
    url = f"{target.url}/charge"

    async def attempt(execution_id: uuid.UUID = EXECUTION) -> list[str]:
        s = session(client, execution_id)
        await s.post(url, json={"a": 1})
        await s.post(f"{url}?expand=x", json={"a": 2})  # the query is not part of the key
        await s.post(f"{target.url}/refund", json={})
        token = http.STEP.set("pay")
        try:
            await s.post(url, json={})
        finally:
            http.STEP.reset(token)
        await s.post(url, json={}, idempotency_key="caller-chosen")
        await s.put(url, json={})
        return [r.headers.get("idempotency-key", "-") for r in target.requests()[-6:]]

    first = await attempt()
    again = await attempt()
    other = await attempt(uuid.uuid4())
    assert first == again, "a new attempt of the same execution sends the same keys"
    assert first[0] != first[1], "the second POST to one URL is another call"
    assert len(set(first[:4])) == 4, "URL and step each make a key of their own"
    assert first[4:] == ["caller-chosen", "-"]
    assert not set(first[:4]) & set(other[:4]), "another execution never shares a key"
    derived = str(uuid.uuid5(http.IDEMPOTENCY_NAMESPACE, f"{EXECUTION}||POST http://{target.hostport}{'/charge'}|1"))
    assert first[0] == derived, "the documented formula"


async def test_bad_per_call_arguments_are_refused(target: Target, client: http.Client) -> None:
    s = session(client)
    with pytest.raises(ValueError, match="retries"):
        await s.get(f"{target.url}/x", retries=0)
    with pytest.raises(ValueError, match="max_wait"):
        await s.get(f"{target.url}/x", max_wait=-1)
    with pytest.raises(ValueError, match="idempotency_key"):
        await s.post(f"{target.url}/x", idempotency_key="k" * 256)
    with pytest.raises(errors.ConfigError, match=r"app\.rate_limit"):
        await s.get(f"{target.url}/x", rate_key="undeclared")
    assert target.requests() == []


# --- logs ----------------------------------------------------------------------------------------


async def test_every_call_is_logged_without_secrets(target: Target, client: http.Client) -> None:
    secrets = ["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "q-secret-value-42", "basic-pass-99"]
    target.script("/v1/charges", (500, {}))
    with capture_logs() as logs:
        host = target.url.removeprefix("http://")
        r = await session(client).post(
            f"http://{host}/v1/charges?api_key={secrets[1]}&x=1",
            json={"amount": 100},
            headers={"Authorization": f"Bearer {secrets[0]}", "Stripe-Account": "acct_1"},
        )
        await session(client).get(f"http://user:{secrets[2]}@{host}/v1/me")
    assert r.status_code == 200
    calls = [e for e in logs if e["event"] == "http.call"]
    assert [(e["method"], e["host"], e["path"], e["status"]) for e in calls] == [
        ("POST", host, "/v1/charges", 500),
        ("POST", host, "/v1/charges", 200),
        ("GET", host, "/v1/me", 200),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in calls)
    assert calls[0]["retry_in"] is not None and calls[1]["retry_in"] is None
    assert {e["correlation_id"] for e in calls} == {"corr-123"}
    text = repr(logs)
    for secret in secrets:
        assert secret not in text
    assert "api_key" not in text and "Authorization" not in text and "Bearer" not in text
    assert "Basic" not in text and "user:" not in text
    # the server did get them: the test would notice if they were simply not sent
    seen = target.requests("/v1/charges")[-1]
    assert seen.headers["authorization"] == f"Bearer {secrets[0]}"
    assert secrets[1] in seen.query


# --- the sync face -----------------------------------------------------------------------------


async def test_the_sync_face_works_from_a_worker_thread_and_refuses_the_loop(
    target: Target, client: http.Client
) -> None:
    s = session(client)
    token = http.STEP.set("in-thread-step")
    try:
        r = await asyncio.to_thread(s.sync.post, f"{target.url}/sync", json={"x": 1})
    finally:
        http.STEP.reset(token)
    assert r.status_code == 200 and r.json()["path"] == "/sync"
    (seen,) = target.requests("/sync")
    expected = uuid.uuid5(
        http.IDEMPOTENCY_NAMESPACE, f"{EXECUTION}|in-thread-step|POST http://{target.hostport}/sync|1"
    )
    assert seen.headers["idempotency-key"] == str(expected), "the thread's step is used"
    with pytest.raises(RuntimeError, match=r"await ctx\.http"):
        s.sync.get(f"{target.url}/sync")
    assert len(target.requests("/sync")) == 1


async def test_one_connection_pool_serves_many_concurrent_calls(target: Target, client: http.Client) -> None:
    threads_before = threading.active_count()
    rs = await asyncio.gather(*(session(client).get(f"{target.url}/p{i}") for i in range(50)))
    assert {r.status_code for r in rs} == {200}
    assert threading.active_count() == threads_before
