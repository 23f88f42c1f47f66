"""Every verifier against the vectors its provider publishes, and against its own library.

Stripe and Shopify publish no vectors: Stripe is cross-checked with stripe-python, Shopify
with its documented algorithm computed independently here. Standard Webhooks and Slack are
also cross-checked with their official libraries on many generated deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
import time
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import standardwebhooks
import stripe as stripe_lib
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from solo_os import errors, sources
from solo_os.sources import DictHeaders, Source


def bound(source: Source, secret: str) -> Source:
    assert source.bind("test", {"SECRET": secret}) == []
    return source


def _decodes(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


utf8_bodies = st.binary(max_size=300).filter(_decodes)  # the libraries take str payloads


def verifies(source: Source, headers: dict[str, str], body: bytes, now: float) -> bool:
    try:
        source.verify(DictHeaders(headers), body, now)
    except errors.SignatureError:
        return False
    return True


# --- Standard Webhooks / Svix ----------------------------------------------------------------

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = "1614265330"


@pytest.mark.parametrize(
    ("secret", "msg_id", "ts", "body", "signature", "valid"),
    [
        # standard-webhooks libraries/python/tests/test_webhooks.py::test_sign_function
        # (also svix-webhooks python/tests/test_webhooks.py)
        pytest.param(
            SW_SECRET, SW_ID, SW_TS, b'{"test": 2432232314}',
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", True, id="spec-python",
        ),
        # the same test: the last character changed must fail
        pytest.param(
            SW_SECRET, SW_ID, SW_TS, b'{"test": 2432232314}',
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", False, id="spec-python-tampered",
        ),
        # standard-webhooks rust library, test_sign
        pytest.param(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553", b'{"email":"test@example.com","username":"test_user"}',
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", True, id="spec-rust",
        ),
        # svix-webhooks csharp/Svix.Tests/WebhookTest.cs, large payloads (256 KiB and 1 MiB)
        pytest.param(
            SW_SECRET, SW_ID, SW_TS, b"a" * 262144,
            "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0=", True, id="svix-256KiB",
        ),
        pytest.param(
            SW_SECRET, SW_ID, SW_TS, b"a" * 1048576,
            "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A=", True, id="svix-1MiB",
        ),
    ],
)
def test_standard_webhooks_published_vectors(
    secret: str, msg_id: str, ts: str, body: bytes, signature: str, valid: bool
) -> None:
    source = bound(sources.standard_webhooks(secret_env="SECRET"), secret)
    headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": signature}
    assert verifies(source, headers, body, float(ts)) is valid
    # Svix's own header names carry the same signature
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    assert verifies(source, svix, body, float(ts)) is valid
    # among other entries: an unknown version and a foreign v1 do not spoil a match
    crowded = {**headers, "webhook-signature": f"v1a,AAAA v1,{'A' * 43}= {signature}"}
    assert verifies(source, crowded, body, float(ts)) is valid


def test_standard_webhooks_secret_without_prefix_and_padding_is_the_same_key() -> None:
    # the libraries accept the bare base64 and unpadded base64 (standardwebhooks adds "==")
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": SW_ID, "webhook-timestamp": SW_TS,
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    for form in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SW_SECRET):
        source = bound(sources.standard_webhooks(secret_env="SECRET"), form)
        assert verifies(source, headers, body, 1614265330)


# --- GitHub ----------------------------------------------------------------------------------


def test_github_published_vector() -> None:
    # GitHub docs, "Validating webhook deliveries", "Testing the webhook payload validation"
    source = bound(sources.github(secret_env="SECRET"), "It's a Secret to Everybody")
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verifies(source, {"X-Hub-Signature-256": good}, b"Hello, World!", 0)
    assert not verifies(source, {"X-Hub-Signature-256": good}, b"Hello, World?", 0)
    assert not verifies(source, {"X-Hub-Signature-256": good.upper()}, b"Hello, World!", 0)


# --- Slack -----------------------------------------------------------------------------------

# Slack docs, "Verifying requests from Slack"; python-slack-sdk
# tests/slack_sdk/signature/test_signature_verifier.py
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


@pytest.mark.parametrize(
    ("offset", "valid"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_slack_published_vector_within_300_seconds_either_way(offset: int, valid: bool) -> None:
    source = bound(sources.slack(secret_env="SECRET"), SLACK_SECRET)
    headers = {"X-Slack-Request-Timestamp": SLACK_TS, "X-Slack-Signature": SLACK_SIG}
    assert verifies(source, headers, SLACK_BODY, int(SLACK_TS) + offset) is valid
    assert not verifies(source, headers, SLACK_BODY + b"x", int(SLACK_TS))


# --- Stripe: no published vector; stripe-python is the reference ------------------------------

STRIPE_SECRET = "whsec_test_0123456789abcdef"


def test_stripe_signature_made_by_stripe_python_verifies() -> None:
    body = b'{"id": "evt_1", "object": "event", "type": "invoice.paid"}'
    now = int(time.time())
    header = stripe_lib.WebhookSignature.generate_signature_header(  # type: ignore[attr-defined]
        body.decode(), STRIPE_SECRET, timestamp=now
    )
    source = bound(sources.stripe(secret_env="SECRET"), STRIPE_SECRET)
    assert verifies(source, {"Stripe-Signature": header}, body, now)
    assert not verifies(source, {"Stripe-Signature": header}, body + b" ", now)


def test_stripe_signature_made_here_verifies_with_stripe_python() -> None:
    source = bound(sources.stripe(secret_env="SECRET"), STRIPE_SECRET)
    now = time.time()
    body, headers = source.build_delivery("invoice.paid", {"id": "in_1"}, now)
    event = stripe_lib.Webhook.construct_event(  # type: ignore[no-untyped-call]
        body.decode(), headers["stripe-signature"], STRIPE_SECRET, tolerance=300
    )
    assert event["type"] == "invoice.paid"
    assert event["data"]["object"]["id"] == "in_1"


@settings(max_examples=150, deadline=None)
@given(
    body=utf8_bodies,
    age=st.integers(min_value=-10_000, max_value=10_000),
    secrets=st.lists(
        st.sampled_from(["whsec_a1", "whsec_b2", "whsec_c3"]), min_size=1, max_size=2, unique=True
    ),
    signer=st.sampled_from(["whsec_a1", "whsec_b2", "whsec_c3"]),
    extra_v1=st.booleans(),
    add_v0=st.booleans(),
)
def test_stripe_agrees_with_stripe_python(
    body: bytes, age: int, secrets: list[str], signer: str, extra_v1: bool, add_v0: bool
) -> None:
    now = 1_700_000_000
    t = now - age
    header = stripe_lib.WebhookSignature.generate_signature_header(  # type: ignore[attr-defined]
        body.decode(), signer, timestamp=t
    )
    if extra_v1:
        header += ",v1=" + "0" * 64
    if add_v0:
        header += ",v0=" + "f" * 64
    ours = bound(sources.stripe(secret_env="SECRET"), ",".join(secrets))
    theirs = []
    for secret in secrets:
        try:
            _stripe_verify_at(body.decode(), header, secret, now)
            theirs.append(True)
        except stripe_lib.SignatureVerificationError:
            theirs.append(False)
    assert verifies(ours, {"stripe-signature": header}, body, now) is any(theirs)


def _stripe_verify_at(payload: str, header: str, secret: str, now: int) -> None:
    with mock.patch("stripe._webhook.time") as clock:  # stripe-python reads the clock itself
        clock.time.return_value = float(now)
        stripe_lib.WebhookSignature.verify_header(  # type: ignore[attr-defined]
            payload, header, secret, tolerance=300
        )


# --- Shopify: no published vector; the documented algorithm, computed independently ----------


def test_shopify_documented_algorithm() -> None:
    secret = "hush"
    body = b'{"id": 820982911946154508, "email": "jon@example.com"}'
    mac = std_hmac.new(secret.encode(), body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    source = bound(sources.shopify(secret_env="SECRET"), secret)
    assert verifies(source, {"X-Shopify-Hmac-Sha256": expected}, body, 0)
    assert not verifies(source, {"X-Shopify-Hmac-Sha256": expected}, body[:-1], 0)
    assert source.sign(body, 0) == {"x-shopify-hmac-sha256": expected}


# --- Standard Webhooks and Slack against their official libraries ----------------------------


@settings(max_examples=150, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=64),
    msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    body=utf8_bodies,
    skew=st.integers(min_value=-600, max_value=600),
)
def test_standard_webhooks_agrees_with_the_standardwebhooks_library(
    key: bytes, msg_id: str, body: bytes, skew: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    now = time.time()
    ts = int(now) + skew
    lib = standardwebhooks.Webhook(secret)
    signature = lib.sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    try:
        lib.verify(body, headers, json_parse=False)  # reads the clock: the skew decides
        theirs = True
    except standardwebhooks.webhooks.WebhookVerificationError:
        theirs = False
    ours = bound(sources.standard_webhooks(secret_env="SECRET"), secret)
    if abs(skew) in range(299, 302):
        return  # the two clock readings may straddle the boundary
    assert verifies(ours, headers, body, now) is theirs
    # and what we sign, the library accepts
    b, h = ours.build_delivery("user.created", {"id": 1}, time.time())
    assert lib.verify(b, h)["data"] == {"id": 1}


class _Clock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


@settings(max_examples=150, deadline=None)
@given(
    # a comma separates secrets (rotation), so one secret never holds one
    secret=st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
        min_size=8, max_size=40,
    ),
    body=utf8_bodies,
    skew=st.integers(min_value=-1000, max_value=1000),
    tamper=st.booleans(),
)
def test_slack_agrees_with_slack_sdk(secret: str, body: bytes, skew: int, tamper: bool) -> None:
    now = 1_700_000_000
    ts = str(now + skew)
    signer = SignatureVerifier(secret, clock=_Clock(now))  # type: ignore[arg-type]
    signature = signer.generate_signature(timestamp=ts, body=body)
    assert signature is not None
    if tamper:
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    theirs = signer.is_valid(body=body, timestamp=ts, signature=signature)
    ours = bound(sources.slack(secret_env="SECRET"), secret)
    headers = {"x-slack-request-timestamp": ts, "x-slack-signature": signature}
    assert verifies(ours, headers, body, now) is theirs
    b, h = ours.build_delivery("app_mention", {"text": "hi"}, now)
    assert signer.is_valid_request(b, h)


def test_vectors_reject_a_rotated_out_secret() -> None:
    # the published vectors verify only while their secret is among the configured ones
    source = bound(sources.github(secret_env="SECRET"), "new-secret,It's a Secret to Everybody")
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verifies(source, {"X-Hub-Signature-256": good}, b"Hello, World!", 0)
    rotated: Any = bound(sources.github(secret_env="SECRET"), "new-secret")
    assert not verifies(rotated, {"X-Hub-Signature-256": good}, b"Hello, World!", 0)
