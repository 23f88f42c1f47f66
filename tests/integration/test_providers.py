"""Every provider through the real ingress, on SQLite and PostgreSQL: signed deliveries are
accepted once, forgeries and malformed headers are 401 (never 5xx) and leave nothing behind,
Slack's handshake and retries behave, each source keeps its own body limit, and a refused
delivery is counted and logged with source and reason but never with its body or a secret.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import structlog
from pydantic import BaseModel
from structlog.testing import capture_logs

from solo_os import App, Context, errors, sources
from solo_os import store as store_mod
from solo_os.observability import metrics
from solo_os.runtime import ingress
from tests import helpers

ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_it_stripe_0123456789",
    "GITHUB_WEBHOOK_SECRET": "it-github-secret",
    "SHOPIFY_WEBHOOK_SECRET": "it-shopify-secret",
    "SLACK_SIGNING_SECRET": "it-slack-signing-secret",
    "SVIX_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "BILLING_WEBHOOK_SECRET": helpers.SECRET,
}
SMALL_LIMIT = 2048


class Invoice(BaseModel):
    id: str
    amount_paid: int


class Issue(BaseModel):
    action: str
    issue: dict[str, Any]


def provider_app(calls: list[tuple[str, Any]]) -> App:
    app = App(service="providers-test")
    app.source("stripe", sources.stripe())
    app.source("stripe-objects", sources.stripe(payload="data.object"))
    app.source("github", sources.github(max_body_bytes=SMALL_LIMIT * 4))
    app.source("shopify", sources.shopify(max_body_bytes=SMALL_LIMIT))
    app.source("slack", sources.slack())
    app.source("svix", sources.standard_webhooks(secret_env="SVIX_WEBHOOK_SECRET", payload="data"))
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("stripe-objects", "invoice.paid", schema=Invoice)
    def invoice_paid(event: Invoice, ctx: Context) -> None:
        calls.append(("invoice_paid", event.id))

    @app.on("github", "issues.opened", schema=Issue)
    def issue_opened(event: Issue, ctx: Context) -> None:
        calls.append(("issue_opened", event.issue["number"]))

    @app.on("slack", "app_mention")
    def mention(event: dict[str, Any], ctx: Context) -> None:
        calls.append(("mention", event["event_id"]))

    for name in ("stripe", "shopify", "svix", "billing"):
        app.on(name, "*", name=f"audit_{name}")(lambda event, ctx: None)
    return app


def running(database_url: str, calls: list[tuple[str, Any]] | None = None, **kw: Any) -> Any:
    app = provider_app(calls if calls is not None else [])
    return helpers.running(app, database_url, env=ENV, **kw)


def signed(h: helpers.Harness, name: str, event_type: str, data: Any, now: float | None = None
           ) -> tuple[bytes, dict[str, str]]:
    return h.runtime.app.sources[name].build_delivery(event_type, data, now or time.time())


async def post(h: helpers.Harness, name: str, body: bytes, headers: Any) -> httpx.Response:
    return await h.client.post(f"/webhooks/{name}", content=body, headers=headers)


async def events(h: helpers.Harness) -> list[Any]:
    return await h.store.list_events(store_mod.Filters(limit=0))


DATA: dict[str, tuple[str, Any]] = {
    "stripe": ("customer.created", {"id": "cus_1", "object": "customer"}),
    "stripe-objects": ("invoice.paid", {"id": "in_1", "amount_paid": 4900}),
    "github": ("issues.opened", {"issue": {"number": 7}}),
    "shopify": ("orders/create", {"id": 820982911946154508}),
    "slack": ("app_mention", {"text": "<@U1> hi", "user": "U2"}),
    "svix": ("user.created", {"id": "user_1"}),
    "billing": ("invoice.paid", helpers.invoice()),
}


@pytest.mark.parametrize("name", sorted(DATA))
async def test_provider_delivery_is_accepted_once_and_forgeries_are_401(
    database_url: str, name: str
) -> None:
    async with running(database_url, roles=("serve",)) as h:
        event_type, data = DATA[name]
        body, headers = signed(h, name, event_type, data)
        first = await post(h, name, body, headers)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "accepted"
        again = await post(h, name, body, headers)
        assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}

        source = h.runtime.app.sources[name]
        [header] = source.secret_headers & set(headers)
        value = headers[header]
        # hex digests are read either case, so the forged tail must differ as well when lowered
        forged = {**headers, header: value[:-2] + ("AA" if value[-2:].lower() != "aa" else "BB")}
        for attempt in ((body, forged), (body + b" ", headers), (body, {})):
            r = await post(h, name, *attempt)
            assert r.status_code == 401
            assert r.json() == {"error": "invalid_signature"}

        [stored] = await events(h)
        assert stored.type == event_type
        assert stored.status == "accepted"
        found = await h.store.get_event(stored.id)
        assert found is not None
        event, raw = found
        assert raw == body  # the raw bytes, as signed
        assert not source.secret_headers & set(event.headers or {})


async def test_stripe_schema_sees_data_object_and_handler_runs(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with running(database_url, calls) as h:
        paid = {"id": "in_9", "amount_paid": 1}
        body, headers = signed(h, "stripe-objects", "invoice.paid", paid)
        r = await post(h, "stripe-objects", body, headers)
        assert r.json()["executions"] == 1
        bad_body, bad_headers = signed(h, "stripe-objects", "invoice.paid", {"id": "in_10"})
        bad = await post(h, "stripe-objects", bad_body, bad_headers)
        assert bad.status_code == 400
        assert [d["loc"] for d in bad.json()["details"]] == [["amount_paid"]]

        async def ran() -> bool:
            return calls == [("invoice_paid", "in_9")]

        await helpers.eventually(ran)


async def test_github_type_joins_event_and_action(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with running(database_url, calls) as h:
        body, headers = signed(h, "github", "issues.opened", {"issue": {"number": 42}})
        assert headers["x-github-event"] == "issues"
        r = await post(h, "github", body, headers)
        assert r.json()["executions"] == 1

        async def ran() -> bool:
            return calls == [("issue_opened", 42)]

        await helpers.eventually(ran)
        [stored] = await events(h)
        assert stored.idempotency_key == headers["x-github-delivery"]


async def test_stripe_refuses_a_replay_older_than_300_seconds(database_url: str) -> None:
    async with running(database_url, roles=("serve",)) as h:
        body, headers = signed(h, "stripe", "invoice.paid", {"id": "in_1"}, now=time.time() - 301)
        r = await post(h, "stripe", body, headers)
        assert r.status_code == 401
        assert await events(h) == []


# --- Slack ------------------------------------------------------------------------------------


async def test_slack_url_verification_is_answered_only_when_signed(database_url: str) -> None:
    async with running(database_url, roles=("serve",)) as h:
        body, headers = signed(h, "slack", "url_verification", {"challenge": "c-123"})
        r = await post(h, "slack", body, headers)
        assert r.status_code == 200
        assert r.json() == {"challenge": "c-123"}
        unsigned = {k: v for k, v in headers.items() if k != "x-slack-signature"}
        assert (await post(h, "slack", body, unsigned)).status_code == 401
        forged = {**headers, "x-slack-signature": "v0=" + "0" * 64}
        assert (await post(h, "slack", body, forged)).status_code == 401
        old = time.time() - 400
        stale_body, stale = signed(h, "slack", "url_verification", {"challenge": "c"}, old)
        assert (await post(h, "slack", stale_body, stale)).status_code == 401
        assert await events(h) == []  # a handshake is not an event


async def test_slack_retries_are_duplicates_and_run_once(database_url: str) -> None:
    calls: list[tuple[str, Any]] = []
    async with running(database_url, calls) as h:
        slack = h.runtime.app.sources["slack"]
        body, headers = signed(h, "slack", "app_mention", {"text": "hi"})
        first = await post(h, "slack", body, headers)
        assert first.json()["status"] == "accepted"
        for n in (1, 2, 3):
            # Slack re-signs each retry with a fresh timestamp; the event_id stays
            retry = {**headers, **slack.sign(body, time.time() + n)}
            retry["x-slack-retry-num"] = str(n)
            retry["x-slack-retry-reason"] = "http_timeout"
            r = await post(h, "slack", body, retry)
            assert r.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}

        async def ran() -> bool:
            return len(calls) == 1

        await helpers.eventually(ran)
        assert len(await events(h)) == 1


# --- body limits per source -------------------------------------------------------------------


async def test_each_source_has_its_own_body_limit(database_url: str) -> None:
    async with running(
        database_url, roles=("serve",), settings={"SOLO_OS_MAX_BODY_BYTES": SMALL_LIMIT * 2}
    ) as h:
        big = {"id": 1, "pad": "x" * (SMALL_LIMIT + 100)}  # over shopify's, under the default
        body, headers = signed(h, "shopify", "orders/create", big)
        r = await post(h, "shopify", body, headers)
        assert r.status_code == 413
        assert r.json() == {"error": "payload_too_large"}

        async def stream() -> Any:  # no Content-Length: the limit applies while reading
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        r = await h.client.post("/webhooks/shopify", content=stream(), headers=headers)
        assert r.status_code == 413
        # the same size is fine where the app's default applies
        inv = helpers.invoice(metadata={"pad": "x" * (SMALL_LIMIT + 100)})
        assert (await h.post("billing", inv)).status_code == 200
        # and a source may allow more than the default
        huge = {"issue": {"number": 1}, "pad": "x" * (SMALL_LIMIT * 3)}
        gh_body, gh_headers = signed(h, "github", "issues.opened", huge)
        assert len(gh_body) > SMALL_LIMIT * 2
        assert (await post(h, "github", gh_body, gh_headers)).status_code == 200
        over = await h.post("billing", helpers.invoice(metadata={"pad": "x" * SMALL_LIMIT * 3}))
        assert over.status_code == 413
        assert sorted(e.source for e in await events(h)) == ["billing", "github"]


# --- malformed headers ------------------------------------------------------------------------

MALFORMED: list[tuple[str, Any]] = [
    ("stripe", {"stripe-signature": "t=abc,v1=00"}),
    ("stripe", {"stripe-signature": "t=" + "9" * 5000 + ",v1=" + "0" * 64}),
    ("stripe", {"stripe-signature": "t=-1,v1=" + "0" * 64}),
    ("stripe", {"stripe-signature": "v1"}),
    ("stripe", [("stripe-signature", "t=1,v1=00"), ("stripe-signature", "t=2,v1=00")]),
    ("github", {"x-hub-signature-256": "sha256=" + "z" * 64}),
    ("github", {"x-hub-signature-256": "x" * 60_000}),
    ("github", {"x-hub-signature-256": b"sha256=\xff\xfe"}),
    ("shopify", {"x-shopify-hmac-sha256": "%%%not-base64%%%"}),
    ("slack", {"x-slack-request-timestamp": "1e12", "x-slack-signature": "v0=00"}),
    ("slack", {"x-slack-request-timestamp": "9" * 20, "x-slack-signature": "v0=" + "0" * 64}),
    ("svix", {"webhook-id": "m", "webhook-timestamp": "now", "webhook-signature": "v1,AAAA"}),
    ("svix", {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1," + "@" * 44}),
    ("svix", {"svix-id": "m", "svix-timestamp": str(int(time.time())), "svix-signature": "v1"}),
    ("billing", {"x-signature": "sha256=" + "0" * 63}),
]


@pytest.mark.parametrize(("name", "headers"), MALFORMED)
async def test_malformed_signature_headers_are_401(
    database_url: str, name: str, headers: Any
) -> None:
    async with running(database_url, roles=("serve",)) as h:
        r = await post(h, name, b'{"type": "x", "id": "evt_1"}', headers)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_signature"}
        assert await events(h) == []


async def test_a_key_postgres_text_cannot_hold_is_stored_as_its_digest(database_url: str) -> None:
    """Pins a bug class: a NUL in a body field used as key made PostgreSQL fail (a 503)."""
    async with running(database_url, roles=("serve",)) as h:
        stripe = h.runtime.app.sources["stripe"]
        body = b'{"id": "evt_\\u0000x", "object": "event", "type": "charge.succeeded"}'
        headers = stripe.sign(body, time.time())
        r = await post(h, "stripe", body, headers)
        assert r.status_code == 200, r.text
        [stored] = await events(h)
        assert stored.idempotency_key.startswith("sha256:")
        assert (await post(h, "stripe", body, headers)).json()["status"] == "duplicate"


# --- counted and logged, never with the body or a secret -------------------------------------


async def test_refused_delivery_is_counted_and_logged_without_body_or_secret(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fresh logger: another test may have configured structlog with cached loggers
    monkeypatch.setattr(ingress, "log", structlog.get_logger("solo_os.ingress"))
    secret_body = b'{"type": "invoice.paid", "card": "4242424242424242"}'

    def count() -> float:
        value = metrics.registry.get_sample_value(
            "solo_os_deliveries_total", {"source": "stripe", "outcome": "invalid_signature"}
        )
        return value or 0.0

    async with running(database_url, roles=("serve",)) as h:
        before = count()
        with capture_logs() as logs:
            old = time.time() - 999
            stale_body, stale = signed(h, "stripe", "invoice.paid", {"id": "in_1"}, old)
            r1 = await post(h, "stripe", stale_body, stale)
            wrong = {"stripe-signature": f"t={int(time.time())},v1={'0' * 64}"}
            r2 = await post(h, "stripe", secret_body, wrong)
            r3 = await post(h, "stripe", secret_body, {})
        assert [r.status_code for r in (r1, r2, r3)] == [401, 401, 401]
        assert count() == before + 3
    refused = [e for e in logs if e["event"] == "webhook.invalid_signature"]
    assert [(e["source"], e["reason"]) for e in refused] == [
        ("stripe", "timestamp_too_old"),
        ("stripe", "signature_mismatch"),
        ("stripe", "missing_header:stripe-signature"),
    ]
    text = repr(logs)
    assert "4242424242424242" not in text
    assert ENV["STRIPE_WEBHOOK_SECRET"] not in text
    assert "v1=" not in text  # nor the signature header


async def test_missing_secret_stops_the_start_naming_the_variable(database_url: str) -> None:
    env = {k: v for k, v in ENV.items() if k != "SLACK_SIGNING_SECRET"}
    env["SVIX_WEBHOOK_SECRET"] = "whsec_%%%"
    with pytest.raises(errors.ConfigError) as caught:
        async with helpers.running(provider_app([]), database_url, env=env):
            pass
    problems = caught.value.problems
    assert any(p.startswith("SLACK_SIGNING_SECRET: not set") for p in problems)
    assert any(p.startswith("SVIX_WEBHOOK_SECRET: ") and "%%%" not in p for p in problems)
