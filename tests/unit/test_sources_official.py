"""The new sources against the providers' own libraries and published vectors, both ways where
the library signs: what solo-os signs the library accepts, and what the library (or the
documented algorithm, computed here independently) signs solo-os accepts. Tampering with any
signed part makes both refuse it.

Libraries (dev group): twilio (``RequestValidator``), sendgrid (``EventWebhook``),
paddle-python-sdk (``PaddleSignature``), svix (``Webhook``; Resend and Clerk deliver through
Svix), squareup (``WebhooksHelper``), hubspot-api-client (``Signature``), PyNaCl (Discord's
Ed25519, as discord-interactions does). Providers with no Python library that verifies are
computed from their documented algorithm, cited next to each case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import nacl.signing
import pytest
import svix.webhooks
from hubspot.utils.signature import Signature as HubSpotSignature
from paddle_billing.Notifications.PaddleSignature import PaddleSignature
from paddle_billing.Notifications.Secret import Secret as PaddleSecret
from sendgrid.helpers.eventwebhook import EventWebhook
from square.utils.webhooks_helper import verify_signature as square_verify
from twilio.request_validator import RequestValidator

from solo_os import errors, sources
from solo_os.sources import _base, _keys

NOW = time.time()


def bound(source: _base.Source, secret: str, **env: str) -> _base.Source:
    assert source.secret_env is not None
    assert not source.bind(source.kind, {source.secret_env: secret, **env})
    return source


def accepts(source: _base.Source, body: bytes, headers: dict[str, str], now: float = NOW) -> bool:
    try:
        source.authenticate(_base.DictHeaders(headers), body, now)
    except errors.SignatureError:
        return False
    return True


def h(secret: str, message: bytes, digest: Any = hashlib.sha256) -> bytes:
    return hmac.new(secret.encode(), message, digest).digest()


# --- Twilio ------------------------------------------------------------------------------------

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def test_twilio_matches_request_validator_both_ways() -> None:
    token = "12345678901234567890123456789012"
    twilio = bound(sources.twilio(url=TWILIO_URL), token)
    fields = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212", "Body": "héllo wörld & more"}
    body = urllib.parse.urlencode(fields).encode()
    validator = RequestValidator(token)
    theirs = validator.compute_signature(TWILIO_URL, fields)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert accepts(twilio, body, {**form, "x-twilio-signature": theirs})
    ours = twilio.sign(body, NOW)["x-twilio-signature"]
    assert ours == theirs
    assert validator.validate(TWILIO_URL, fields, ours)
    # Twilio's validator also accepts the URL with the default port made explicit
    with_port = validator.compute_signature("https://mycompany.com:443/myapp.php?foo=1&bar=2", fields)
    assert accepts(twilio, body, {**form, "x-twilio-signature": with_port})
    tampered = body.replace(b"Digits=1234", b"Digits=1235")
    assert not accepts(twilio, tampered, {**form, "x-twilio-signature": theirs})
    # shared-key webhooks signed with HMAC-SHA256 (the library's algorithm argument)
    sha256 = validator.compute_signature(TWILIO_URL, fields, "HMAC_SHA256")
    settings = {"x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}
    assert accepts(twilio, body, {**form, **settings, "x-twilio-signature": sha256})
    assert not accepts(twilio, body, {**form, "x-twilio-signature": sha256})


def test_twilio_published_example() -> None:
    """Twilio's docs ("Validating signatures from Twilio"): the example request and token give
    ``0/KCTR6DLpKmkAf8muzZqo1nDgQ=`` (the same case twilio-python's tests use)."""
    twilio = bound(sources.twilio(url="https://mycompany.com/myapp.php?foo=1&bar=2"),
                   "12345")
    fields = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
              ("From", "+12349013030"), ("To", "+18005551212")]
    body = urllib.parse.urlencode(fields).encode()
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-twilio-signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}
    assert accepts(twilio, body, headers)


# --- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_signature_verifies_with_eventwebhook() -> None:
    test_key = _keys.new_p256_test_key()
    public = _keys.p256_public_b64(test_key)
    signer = bound(sources.sendgrid(), test_key)
    body, headers = signer.build_delivery("delivered", [{"email": "a@example.com"}], NOW)
    library = EventWebhook(public)
    signature = headers["x-twilio-email-event-webhook-signature"]
    timestamp = headers["x-twilio-email-event-webhook-timestamp"]
    assert library.verify_signature(body.decode(), signature, timestamp)
    assert not library.verify_signature(body.decode() + " ", signature, timestamp)
    verifier = bound(sources.sendgrid(), public)  # production form: the public key only
    assert accepts(verifier, body, headers)
    assert not accepts(verifier, body + b" ", headers)
    other = bound(sources.sendgrid(), _keys.p256_public_b64(_keys.new_p256_test_key()))
    assert not accepts(other, body, headers)


# --- Paddle ------------------------------------------------------------------------------------


def test_paddle_matches_paddle_signature_both_ways() -> None:
    secret = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI"
    paddle = bound(sources.paddle(), secret)
    body, headers = paddle.build_delivery("transaction.paid", {"id": "txn_1"}, NOW)
    assert PaddleSignature().verify(headers["paddle-signature"], body.decode(), PaddleSecret(secret))
    ts = int(NOW)
    theirs = PaddleSignature.calculate_hmac(secret, f"{ts}:".encode() + body).hexdigest()
    header = f"ts={ts};h1={'0' * 64};h1={theirs}"  # rotation: one h1 per key, any may match
    assert accepts(paddle, body, {"paddle-signature": header})
    assert not accepts(paddle, body + b" ", {"paddle-signature": header})
    assert not PaddleSignature().verify(header, body.decode() + " ", PaddleSecret(secret))


# --- Svix: Resend and Clerk --------------------------------------------------------------------


@pytest.mark.parametrize("factory", [sources.resend, sources.clerk])
def test_svix_presets_match_the_svix_library(factory: Any) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    source = bound(factory(), secret)
    body, headers = source.build_delivery("user.created", {"id": "user_1"}, time.time())
    assert {"svix-id", "svix-timestamp", "svix-signature"} <= set(headers)
    svix.webhooks.Webhook(secret).verify(body, headers)  # raises if not valid
    when = datetime.now(UTC)
    theirs = svix.webhooks.Webhook(secret).sign("msg_1", when, body.decode())
    ts = str(int(when.timestamp()))
    for prefix in ("svix-", "webhook-"):
        signed = {f"{prefix}id": "msg_1", f"{prefix}timestamp": ts, f"{prefix}signature": theirs}
        assert accepts(source, body, signed, time.time())
        assert not accepts(source, body + b" ", signed, time.time())


def test_resend_accepts_the_standard_webhooks_vector() -> None:
    """Vector 1 of reference/webhook-signatures.md (standard-webhooks' python tests)."""
    resend = bound(sources.resend(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    headers = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
               "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert accepts(resend, b'{"test": 2432232314}', headers, 1614265330)
    bad = {**headers, "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}
    assert not accepts(resend, b'{"test": 2432232314}', bad, 1614265330)


# --- Square, HubSpot ---------------------------------------------------------------------------


def test_square_matches_webhooks_helper_both_ways() -> None:
    url = "https://example.com/webhook"
    key = "asdf1234"
    square = bound(sources.square(url=url), key)
    body = b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b"}'
    ours = square.sign(body, NOW)["x-square-hmacsha256-signature"]
    assert square_verify(request_body=body.decode(), signature_header=ours,
                         signature_key=key, notification_url=url)
    theirs = base64.b64encode(h(key, url.encode() + body)).decode()
    assert theirs == ours
    assert accepts(square, body, {"x-square-hmacsha256-signature": theirs})
    assert not accepts(square, body + b" ", {"x-square-hmacsha256-signature": theirs})
    assert not square_verify(request_body=body.decode(), signature_header=ours, signature_key=key,
                             notification_url=url + "/")


def test_hubspot_matches_signature_v3_both_ways() -> None:
    url = "https://example.com/webhooks/hubspot?portal=1"
    secret = "a1b2c3d4-0000-1111-2222-333344445555"
    hubspot = bound(sources.hubspot(url=url), secret)
    body, headers = hubspot.build_delivery("contact.creation", {"objectId": 1}, time.time())
    timestamp = headers["x-hubspot-request-timestamp"]
    signature = headers["x-hubspot-signature-v3"]
    assert HubSpotSignature.is_valid(signature=signature, client_secret=secret,
                                     request_body=body.decode(), http_uri=url, http_method="POST",
                                     signature_version="v3", timestamp=timestamp)
    theirs = HubSpotSignature.get_signature(secret, body.decode(), "v3", url, "POST", timestamp)
    assert theirs == signature
    assert accepts(hubspot, body, headers, time.time())
    assert not accepts(hubspot, body + b" ", headers, time.time())
    assert not accepts(hubspot, body, headers, time.time() + 301)  # stale, as the library says


# --- Discord -----------------------------------------------------------------------------------


def test_discord_verifies_pynacl_signatures_and_pynacl_verifies_test_signatures() -> None:
    signing = nacl.signing.SigningKey.generate()
    public = signing.verify_key.encode().hex()
    discord = bound(sources.discord(), public)
    body = b'{"id":"1","type":1,"token":"t","version":1,"application_id":"2"}'
    ts = str(int(NOW))
    sig = signing.sign(ts.encode() + body).signature.hex()
    headers = {"x-signature-ed25519": sig, "x-signature-timestamp": ts}
    assert accepts(discord, body, headers)
    assert not accepts(discord, body + b" ", headers)
    assert not accepts(discord, body, {**headers, "x-signature-timestamp": str(int(NOW) + 1)})
    assert not accepts(discord, body, headers, NOW + 301)
    # a test key signs what the public half (and PyNaCl) verify
    test_key = _keys.new_ed25519_test_key()
    ours = bound(sources.discord(), test_key).sign(body, NOW)
    verify_key = nacl.signing.VerifyKey(bytes.fromhex(_keys.ed25519_public_hex(test_key)))
    verify_key.verify(ts.encode() + body, bytes.fromhex(ours["x-signature-ed25519"]))
    assert accepts(bound(sources.discord(), _keys.ed25519_public_hex(test_key)), body, ours)


# --- documented algorithms, computed independently ---------------------------------------------

BODY = b'{"id":"evt_1","type":"x","webhookTimestamp":TS}'.replace(b"TS", str(int(NOW * 1000)).encode())


def documented() -> list[tuple[str, _base.Source, dict[str, str]]]:
    ts = str(int(NOW))
    return [
        # https://docs.lemonsqueezy.com/help/webhooks/signing-requests
        ("lemonsqueezy", bound(sources.lemonsqueezy(), "lemon-secret"),
         {"x-signature": h("lemon-secret", BODY).hex()}),
        # https://developers.intercom.com/docs/references/webhooks/webhook-models (signed notifications)
        ("intercom", bound(sources.intercom(), "intercom-secret"),
         {"x-hub-signature": "sha1=" + h("intercom-secret", BODY, hashlib.sha1).hex()}),
        # https://linear.app/developers/webhooks (securing webhooks)
        ("linear", bound(sources.linear(), "lin_wh_secret"),
         {"linear-signature": h("lin_wh_secret", BODY).hex()}),
        # https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures
        ("calendly", bound(sources.calendly(), "calendly-key"),
         {"calendly-webhook-signature": f"t={ts},v1=" + h("calendly-key", f"{ts}.".encode() + BODY).hex()}),
        # https://www.typeform.com/developers/webhooks/secure-your-webhooks/
        ("typeform", bound(sources.typeform(), "typeform-secret"),
         {"typeform-signature": "sha256=" + base64.b64encode(h("typeform-secret", BODY)).decode()}),
        # https://docs.gitlab.com/user/project/integrations/webhooks/ (secret token)
        ("gitlab", bound(sources.gitlab(), "gitlab-token-1"), {"x-gitlab-token": "gitlab-token-1"}),
        # https://postmarkapp.com/developer/webhooks/webhooks-overview (basic auth)
        ("postmark", bound(sources.postmark(), "user:pass-word-1"),
         {"authorization": "Basic " + base64.b64encode(b"user:pass-word-1").decode()}),
    ]


@pytest.mark.parametrize("index", range(7))
def test_documented_algorithms_computed_independently(index: int) -> None:
    name, source, headers = documented()[index]
    assert accepts(source, BODY, headers), name
    assert source.sign(BODY, NOW) == headers or name == "calendly", name
    if name not in ("gitlab", "postmark"):  # these two do not sign the body
        assert not accepts(source, BODY.replace(b"evt_1", b"evt_2"), headers), name


def test_mailgun_documented_algorithm() -> None:
    """https://documentation.mailgun.com/docs/mailgun/user-manual/events/webhooks/#securing-webhooks:
    hex(HMAC-SHA256(signing key, timestamp + token)), in the body's ``signature`` object (JSON)
    or as form fields (legacy)."""
    key, ts, token = "key-mailgun", str(int(NOW)), "a" * 50
    sig = h(key, (ts + token).encode()).hex()
    mailgun = bound(sources.mailgun(), key)
    body = json.dumps({"signature": {"timestamp": ts, "token": token, "signature": sig},
                       "event-data": {"id": "e1", "event": "delivered"}}).encode()
    assert accepts(mailgun, body, {"content-type": "application/json"})
    assert not accepts(mailgun, body.replace(token.encode(), b"b" * 50), {})
    assert not accepts(mailgun, body, {}, NOW + 301)
    form = urllib.parse.urlencode({"timestamp": ts, "token": token, "signature": sig,
                                   "event": "delivered"}).encode()
    assert accepts(mailgun, form, {"content-type": "application/x-www-form-urlencoded"})
    document = mailgun.decode(_base.DictHeaders({"content-type": "application/x-www-form-urlencoded"}), form)
    assert mailgun.event_type(_base.DictHeaders({}), document) == "delivered"


def test_slack_slash_command_vector() -> None:
    """Vector 5 of reference/webhook-signatures.md (Slack docs, python-slack-sdk tests): a
    form-encoded slash command, verified over the raw bytes, then decoded to its fields."""
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
        b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700"
        b"885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c"
        b"447fce8b6703c"
    )
    headers = _base.DictHeaders({
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": "1531420618",
        "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    })
    slack = bound(sources.slack(), "8f742231b10e8888abcd99yyyzzz85a5")
    slack.authenticate(headers, body, 1531420618 + 10)
    document = slack.decode(headers, body)
    assert document["command"] == "/webhook-collect"
    assert document["text"] == ""
    assert document["response_url"].startswith("https://hooks.slack.com/commands/")
    assert slack.event_type(headers, document) == "/webhook-collect"
    assert slack.idempotency_key(headers, document) == document["trigger_id"]
