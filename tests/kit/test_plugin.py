"""The ``solo`` fixture: signed deliveries through the real app, drain, clock, assertions."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from solo_os import errors
from solo_os.testing import Clock, Solo
from tests.kit import apps


def invoice(**extra: object) -> dict[str, object]:
    return {"id": f"inv_{uuid.uuid4().hex[:8]}", "amount_cents": 4900, **extra}


# --- every provider, through its own signing and verification -------------------------------


async def test_every_provider_kind_is_signed_verified_and_handled(solo: Solo, effects: apps.Effects) -> None:
    posted = [
        await solo.client.billing("invoice.paid", invoice(id="inv_1")),
        await solo.client.stripe("invoice.paid", invoice(id="in_2")),
        await solo.client.github("issues.opened", {"issue": {"number": 7}}),
        await solo.client.shopify("orders/create", {"id": 820982911946154508}),
        await solo.client.slack("app_mention", {"text": "<@U1> hi"}),
        await solo.client.send("svix", "user.created", {"email": "a@example.com"}),
    ]
    assert [p.status for p in posted] == ["accepted"] * 6, posted
    assert all(p.executions == 1 and p.event_id is not None for p in posted)
    assert await solo.drain() == 6
    for handler in ("fulfil", "stripe_paid", "issue_opened", "order_created", "mentioned", "user_created"):
        await solo.assert_succeeded(handler, times=1)
    assert effects.by("fulfil") == [("inv_1", "rcpt-inv_1", 1)]
    [(invoice_id, key)] = effects.by("stripe_paid")
    assert invoice_id == "in_2" and key.startswith("evt_") and key == posted[1].delivery.idempotency_key
    assert effects.by("issue_opened") == [("opened", 7)]
    assert effects.by("order_created") == [(820982911946154508, posted[3].delivery.idempotency_key)]
    assert effects.by("mentioned") == ["<@U1> hi"]
    assert effects.by("user_created") == ["a@example.com"]


@pytest.mark.parametrize(
    ("source", "event_type", "data"),
    [
        ("billing", "invoice.paid", invoice()),
        ("stripe", "invoice.paid", invoice()),
        ("github", "issues.opened", {"issue": {"number": 1}}),
        ("shopify", "orders/create", {"id": 1}),
        ("slack", "app_mention", {"text": "x"}),
        ("svix", "user.created", {"email": "b@example.com"}),
    ],
)
async def test_redelivery_is_a_duplicate_and_a_tampered_one_is_refused(
    solo: Solo, source: str, event_type: str, data: dict[str, object]
) -> None:
    first = await solo.client.send(source, event_type, data)
    assert first.status == "accepted"
    solo.clock.advance(minutes=1)
    again = await solo.client.post(first.delivery)  # re-signed now, same ids: a provider retry
    assert (again.status, again.event_id) == ("duplicate", first.event_id)
    tampered = dataclasses.replace(first.delivery, body=first.delivery.body.replace(b"}", b" }", 1))
    refused = await solo.client.post(tampered, sign=False)
    assert (refused.status_code, refused.status) == (401, "invalid_signature")
    assert len(await solo.events(source=source)) == 1
    solo.assert_logged("webhook.invalid_signature", source=source, times=1)


async def test_signatures_are_judged_by_the_test_clock(solo: Solo) -> None:
    solo.clock.advance(timedelta(days=3))  # far from the real time: still fresh by the test clock
    fresh = await solo.client.stripe("invoice.paid", invoice())
    assert fresh.status == "accepted"
    old = solo.client.build("stripe", "invoice.paid", invoice())
    solo.clock.advance(minutes=6)  # Stripe's tolerance is 300 s
    stale = await solo.client.post(old, sign=False)
    assert (stale.status_code, stale.status) == (401, "invalid_signature")
    assert (await solo.client.post(old)).status == "accepted"  # signed again: a Stripe retry
    [_, event] = await solo.events(source="stripe")
    assert event.received_at == solo.clock.now()


async def test_headers_given_are_signed_into_the_delivery(solo: Solo) -> None:
    one = await solo.client.billing(
        "invoice.paid", invoice(), headers={"X-Idempotency-Key": "evt_fixed", "x-correlation-id": "c-42"}
    )
    two = await solo.client.billing("invoice.paid", invoice(), headers={"x-idempotency-key": "evt_fixed"})
    assert (one.status, two.status) == ("accepted", "duplicate")
    assert one.delivery.idempotency_key == "evt_fixed"
    [event] = await solo.events()
    assert (event.idempotency_key, event.correlation_id) == ("evt_fixed", "c-42")


async def test_schema_failures_are_rejected_and_stored(solo: Solo) -> None:
    posted = await solo.client.billing("invoice.paid", {"id": "inv_x", "amount_cents": -1})
    assert (posted.status_code, posted.status) == (400, "invalid_payload")
    [event] = await solo.events(status="rejected")
    assert event.errors and event.errors[0]["loc"] == ["amount_cents"]
    assert await solo.executions() == []


async def test_choosing_a_source_that_does_not_exist_or_is_ambiguous(solo: Solo) -> None:
    with pytest.raises(errors.ConfigError, match="no source named or of kind 'paddle'"):
        await solo.client.send("paddle", "x", {})
    with pytest.raises(AttributeError, match="no attribute 'paddle'"):
        solo.client.paddle  # noqa: B018 - the attribute lookup is what is tested
    solo.app.source("billing2", __import__("solo_os").sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    with pytest.raises(errors.ConfigError, match="2 hmac sources"):
        solo.client.build("hmac", "invoice.paid", {})


async def test_raw_bodies_go_out_unsigned(solo: Solo) -> None:
    r = await solo.client.raw("billing", b'{"id": "x"}', {"x-event-type": "invoice.paid"})
    assert (r.status_code, r.json()) == (401, {"error": "invalid_signature"})
    r = await solo.client.raw("nope", b"{}")
    assert r.status_code == 404
    assert (await solo.client.http.get("/healthz")).json() == {"status": "ok"}


# --- drain, retries and the clock ------------------------------------------------------------


async def test_nothing_runs_until_drained(solo: Solo, effects: apps.Effects) -> None:
    await solo.client.billing("invoice.paid", invoice())
    [pending] = await solo.executions("fulfil")
    assert pending.status == "pending" and effects.seen == []
    assert await solo.drain() == 1
    await solo.assert_succeeded("fulfil", times=1)
    assert await solo.drain() == 0


async def test_a_retry_waits_for_the_clock(solo: Solo, effects: apps.Effects) -> None:
    effects.failures["fulfil"] = 1
    await solo.client.billing("invoice.paid", invoice(id="inv_r"))
    assert await solo.drain() == 1
    [x] = await solo.executions("fulfil", status="pending")
    assert x.attempts == 1 and x.run_after is not None and x.run_after > solo.clock.now()
    assert await solo.drain() == 0  # the retry is not due yet: nothing runs, nothing sleeps
    solo.clock.set(x.run_after)
    assert await solo.drain() == 1
    [done] = await solo.assert_succeeded("fulfil", times=1)
    assert done.attempts == 2
    assert effects.by("fulfil") == [("inv_r", "rcpt-inv_r", 2)]
    solo.assert_logged("execution.failed", handler="fulfil", attempt=1, times=1)
    solo.assert_logged("fulfilled", invoice_id="inv_r", attempt=2, level="info")


async def test_drain_skipping_retries_runs_them_to_the_dead_letter_queue(
    solo: Solo, effects: apps.Effects
) -> None:
    effects.failures["fulfil"] = 10
    start = solo.clock.now()
    await solo.client.billing("invoice.paid", invoice(id="inv_d"))
    assert await solo.drain(skip_retries=True) >= 4
    [dead] = await solo.assert_dead("fulfil", times=1, error="failed on attempt 4")
    assert dead.attempts == 4
    assert await solo.dead_letters() == [dead]
    assert solo.clock.now() > start  # three backoff delays were jumped over, not slept
    [line] = solo.logs(event="execution.dead")
    assert line["handler"] == "fulfil" and line["error_type"] == "RuntimeError"
    assert [d.execution_id for d in effects.dead] == [dead.id]
    attempts = await solo.attempts(dead)
    assert [a.outcome for a in attempts] == ["failed"] * 4

    effects.failures["fulfil"] = 0
    assert await solo.replay(dead) == [dead.id]
    await solo.drain()
    [ok] = await solo.assert_succeeded("fulfil", times=1)
    assert ok.attempts == 5
    assert await solo.steps(ok) == {"receipt": {"id": "rcpt-inv_d"}}


async def test_non_retryable_goes_dead_at_once_from_a_plain_handler(solo: Solo) -> None:
    await solo.client.billing("invoice.voided", {"id": "inv_v"})
    await solo.drain()
    [dead] = await solo.assert_dead("void", error="cannot void inv_v")
    assert dead.attempts == 1
    solo.assert_logged("execution.dead", handler="void", error_type="NonRetryable")


async def test_advance_runs_each_cron_fire_at_its_time(solo: Solo, effects: apps.Effects) -> None:
    start = solo.clock.now()
    await solo.advance(minutes=20)
    expected = []
    t = start.replace(second=0, microsecond=0)
    while (t := t + timedelta(minutes=1)) <= start + timedelta(minutes=20):
        if t.minute % 5 == 0:
            expected.append(t)
    assert effects.fired == expected and len(expected) == 4
    await solo.assert_succeeded("every-five", times=4)
    assert solo.clock.now() == start + timedelta(minutes=20)
    assert len(solo.logs("schedule.fired", schedule="every-five")) == 4


class TestFixedStart:
    @pytest.fixture
    def solo_clock(self) -> Clock:
        return Clock(datetime(2026, 1, 1, 0, 1, tzinfo=UTC))

    async def test_a_failed_cron_run_is_retried_as_time_passes(
        self, solo: Solo, effects: apps.Effects
    ) -> None:
        effects.failures["every-five"] = 1
        await solo.advance(minutes=4)  # to 00:05: fires and fails
        [x] = await solo.executions("every-five", status="pending")
        assert x.attempts == 1
        await solo.advance(minutes=1)  # the backoff (seconds) elapses within this minute
        [x] = await solo.assert_succeeded("every-five", times=1)
        assert x.attempts == 2
        assert effects.fired == [datetime(2026, 1, 1, 0, 5, tzinfo=UTC)]

    async def test_jumping_the_clock_is_downtime_the_latest_missed_fire_catches_up(
        self, solo: Solo, effects: apps.Effects
    ) -> None:
        solo.clock.advance(hours=1)  # nothing ran meanwhile, as if the app had been down
        await solo.drain()
        assert effects.fired == [datetime(2026, 1, 1, 1, 0, tzinfo=UTC)]
        [missed] = solo.logs("schedule.missed", schedule="every-five")
        assert missed["missed"] == 11


async def test_trigger_fires_a_schedule_now(solo: Solo, effects: apps.Effects) -> None:
    execution_id = await solo.trigger("every-five")
    await solo.drain()
    [x] = await solo.assert_succeeded("every-five", times=1)
    assert x.id == execution_id and effects.fired == [solo.clock.now()]


async def test_clock_jumps_do_not_touch_the_real_clock(solo: Solo) -> None:
    solo.clock.advance(timedelta(days=400))
    assert solo.clock.now() - datetime.now(UTC) > timedelta(days=399)
    with pytest.raises(ValueError, match="backwards"):
        await solo.advance(-1)


async def test_outbound_http_goes_to_the_given_transport(solo: Solo, effects: apps.Effects) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    solo.http_transport = httpx.MockTransport(answer)
    await solo.client.billing("ping.remote", {})
    await solo.drain()
    await solo.assert_succeeded("ping_remote", times=1)
    assert seen == ["https://api.example.test/ping"] and effects.http_answers == [204]


# --- assertions fail with the facts ----------------------------------------------------------


async def test_assertions_fail_with_what_was_found(solo: Solo, effects: apps.Effects) -> None:
    effects.failures["fulfil"] = 1
    await solo.client.billing("invoice.paid", invoice())
    await solo.drain()
    expected = r"(?s)exactly 1 succeeded execution\(s\) of 'fulfil'.*pending"
    with pytest.raises(AssertionError, match=expected) as e:
        await solo.assert_succeeded("fulfil", times=1)
    assert "failed on attempt 1" in str(e.value)
    with pytest.raises(AssertionError, match=r"no handler 'fulfill' \(handlers: .*fulfil"):
        await solo.assert_succeeded("fulfill")
    with pytest.raises(AssertionError, match="at least one dead"):
        await solo.assert_dead("fulfil")
    with pytest.raises(AssertionError, match="1 execution\\(s\\) not finished"):
        await solo.assert_idle()
    with pytest.raises(AssertionError, match=r"'execution\.dead' log line"):
        solo.assert_logged("execution.dead")
    with pytest.raises(ValueError, match="status must be one of"):
        await solo.executions(status="done")


async def test_secrets_are_generated_in_each_sources_form_and_never_logged(solo: Solo) -> None:
    assert solo.secret("stripe").startswith("whsec_")
    assert solo.secret("svix").startswith("whsec_")
    assert solo.secret("billing") == solo.env["BILLING_WEBHOOK_SECRET"]
    await solo.client.billing("invoice.paid", invoice())
    await solo.drain()
    text = repr(solo.logs())
    assert all(solo.env[name] not in text for name in solo.env)


class TestOverrides:
    @pytest.fixture
    def solo_env(self) -> dict[str, str]:
        return {"BILLING_WEBHOOK_SECRET": "given-secret-0123456789"}

    @pytest.fixture
    def solo_settings(self) -> dict[str, object]:
        return {"MAX_RETRY_ATTEMPTS": 2, "retry_base_delay_ms": 0}

    async def test_given_secrets_and_settings_are_used(self, solo: Solo, effects: apps.Effects) -> None:
        assert solo.secret("billing") == "given-secret-0123456789"
        assert solo.app.settings.max_retry_attempts == 2
        effects.failures["user_created"] = 5
        await solo.client.send("svix", "user.created", {"email": "c@example.com"})
        await solo.drain()  # no delay between attempts: both run in one drain
        [dead] = await solo.assert_dead("user_created")
        assert dead.attempts == 2
