"""The sixteen further providers (SPEC section 2, "More providers") through the real ingress, on
SQLite and PostgreSQL: each one's valid delivery is accepted under the type and key read from
the right place, its redelivery is a duplicate, a tampered body, a wrong secret and (where the
scheme signs one) a stale timestamp are 401 and leave nothing behind, and a delivery signed
with the older of two configured secrets is accepted (rotation). Malformed signature headers
are 401, never a 5xx. Startup refuses missing or misformed secrets, naming the variable only.
"""

from __future__ import annotations

import copy
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from solo_os import App, errors, sources
from solo_os import store as store_mod
from solo_os.sources import _base, _keys
from solo_os.sources.mailgun import MailgunSource
from tests import helpers

TWILIO_URL = "https://hooks.example.com/webhooks/twilio?account=main"
SQUARE_URL = "https://hooks.example.com/webhooks/square"
HUBSPOT_URL = "https://hooks.example.com/webhooks/hubspot"

DISCORD_NEW, DISCORD_OLD = _keys.new_ed25519_test_key(), _keys.new_ed25519_test_key()
SENDGRID_NEW, SENDGRID_OLD = _keys.new_p256_test_key(), _keys.new_p256_test_key()
# (new secret, old secret): the variable holds "new,old" (rotation); send signs with the first.
SECRETS: dict[str, tuple[str, str]] = {
    "PADDLE_WEBHOOK_SECRET": ("pdl_ntfset_01new_abc", "pdl_ntfset_01old_xyz"),
    "LEMONSQUEEZY_WEBHOOK_SECRET": ("lemon-new-secret", "lemon-old-secret"),
    "GITLAB_WEBHOOK_TOKEN": ("gitlab-new-token-123", "gitlab-old-token-456"),
    "DISCORD_PUBLIC_KEY": (DISCORD_NEW, DISCORD_OLD),
    "TWILIO_AUTH_TOKEN": ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"),
    "POSTMARK_WEBHOOK_CREDENTIALS": ("hooks:new-password-1", "hooks:old-password-2"),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": (SENDGRID_NEW, SENDGRID_OLD),
    "MAILGUN_WEBHOOK_SIGNING_KEY": ("mailgun-new-key", "mailgun-old-key"),
    "RESEND_WEBHOOK_SECRET": (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
    ),
    "CLERK_WEBHOOK_SIGNING_SECRET": (
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ),
    "INTERCOM_CLIENT_SECRET": ("intercom-new-secret", "intercom-old-secret"),
    "LINEAR_WEBHOOK_SECRET": ("lin_wh_new_secret", "lin_wh_old_secret"),
    "SQUARE_WEBHOOK_SIGNATURE_KEY": ("square-new-key", "square-old-key"),
    "CALENDLY_WEBHOOK_SIGNING_KEY": ("calendly-new-key", "calendly-old-key"),
    "TYPEFORM_WEBHOOK_SECRET": ("typeform-new-secret", "typeform-old-secret"),
    "HUBSPOT_CLIENT_SECRET": ("hubspot-new-secret", "hubspot-old-secret"),
}
ENV = {name: f"{new},{old}" for name, (new, old) in SECRETS.items()}
ENV["HUBSPOT_PUBLIC_URL"] = HUBSPOT_URL


def _doc(body: bytes) -> Any:
    return orjson.loads(body)


@dataclass(frozen=True)
class Case:
    factory: Callable[[], _base.Source]
    event_type: str
    data: Any
    key: Callable[[bytes, dict[str, str]], str | None]  # where the key must come from
    stale: bool = False  # the scheme signs a timestamp
    body_signed: bool = True  # the signature covers the body (not: GitLab, Postmark, Mailgun)
    other: Any = None  # data of a second, different event, where ``data`` fixes the key


def _form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode()))


CASES: dict[str, Case] = {
    "paddle": Case(sources.paddle, "transaction.completed", {"id": "txn_01"},
                   lambda b, h: _doc(b)["event_id"], stale=True),
    "lemonsqueezy": Case(sources.lemonsqueezy, "order_created", {"id": "1", "type": "orders"},
                         lambda b, h: _base.digest_key(b)),
    "gitlab": Case(sources.gitlab, "Merge Request Hook", {"object_kind": "merge_request"},
                   lambda b, h: h["idempotency-key"], body_signed=False),
    "discord": Case(sources.discord, "APPLICATION_COMMAND", {"name": "deploy"},
                    lambda b, h: _doc(b)["id"], stale=True),
    "twilio": Case(lambda: sources.twilio(url=TWILIO_URL), "delivered",
                   {"To": "+15550001", "Body": "héllo & ümlauts+plus"},
                   lambda b, h: h["i-twilio-idempotency-token"]),
    "postmark": Case(sources.postmark, "Bounce", {"ID": 4323372036854775807, "Type": "HardBounce"},
                     lambda b, h: f"Bounce:{_doc(b)['ID']}", body_signed=False,
                     other={"ID": 1, "Type": "SoftBounce"}),
    "sendgrid": Case(sources.sendgrid, "delivered", [{"email": "a@example.com"}, {}],
                     lambda b, h: "sg:" + ",".join(e["sg_event_id"] for e in _doc(b)), stale=True),
    "mailgun": Case(sources.mailgun, "delivered", {"recipient": "a@example.com"},
                    lambda b, h: _doc(b)["event-data"]["id"], stale=True, body_signed=False),
    "resend": Case(sources.resend, "email.delivered", {"email_id": "e_1"},
                   lambda b, h: h["svix-id"], stale=True),
    "clerk": Case(sources.clerk, "user.created", {"id": "user_1"},
                  lambda b, h: h["svix-id"], stale=True),
    "intercom": Case(sources.intercom, "conversation.user.created", {"type": "conversation"},
                     lambda b, h: _doc(b)["id"]),
    "linear": Case(sources.linear, "Issue.create", {"id": "iss_1", "title": "Bug"},
                   lambda b, h: h["linear-delivery"], stale=True),
    "square": Case(lambda: sources.square(url=SQUARE_URL), "payment.updated", {"id": "pay_1"},
                   lambda b, h: _doc(b)["event_id"]),
    "calendly": Case(sources.calendly, "invitee.created", {"email": "a@example.com"},
                     lambda b, h: f"invitee.created:{_doc(b)['payload']['uri']}", stale=True),
    "typeform": Case(sources.typeform, "form_response", {"form_id": "lT4Z3j"},
                     lambda b, h: _doc(b)["event_id"]),
    "hubspot": Case(lambda: sources.hubspot(public_url_env="HUBSPOT_PUBLIC_URL"),
                    "contact.creation", {"objectId": 123},
                    lambda b, h: f"hs:{_doc(b)[0]['eventId']}", stale=True),
}
TYPE_OF: dict[str, Callable[[bytes, dict[str, str]], str]] = {
    # the type, read independently from where the provider puts it
    "paddle": lambda b, h: _doc(b)["event_type"],
    "lemonsqueezy": lambda b, h: h["x-event-name"],
    "gitlab": lambda b, h: h["x-gitlab-event"],
    "discord": lambda b, h: {2: "APPLICATION_COMMAND"}[_doc(b)["type"]],
    "twilio": lambda b, h: _form(b)["MessageStatus"],
    "postmark": lambda b, h: _doc(b)["RecordType"],
    "sendgrid": lambda b, h: _doc(b)[0]["event"],
    "mailgun": lambda b, h: _doc(b)["event-data"]["event"],
    "resend": lambda b, h: _doc(b)["type"],
    "clerk": lambda b, h: _doc(b)["type"],
    "intercom": lambda b, h: _doc(b)["topic"],
    "linear": lambda b, h: f"{_doc(b)['type']}.{_doc(b)['action']}",
    "square": lambda b, h: _doc(b)["type"],
    "calendly": lambda b, h: _doc(b)["event"],
    "typeform": lambda b, h: _doc(b)["event_type"],
    "hubspot": lambda b, h: _doc(b)[0]["subscriptionType"],
}


def more_app() -> App:
    app = App(service="more-providers")
    for name, case in CASES.items():
        app.source(name, case.factory())
        app.on(name, "*", name=f"audit_{name}")(lambda event, ctx: None)
    return app


def running(database_url: str, **kw: Any) -> Any:
    return helpers.running(more_app(), database_url, env=ENV, roles=("serve",), **kw)


def signer(h: helpers.Harness, name: str, which: str) -> _base.Source:
    """A copy of the app's source ``name`` that signs with the ``new``, ``old`` or a ``wrong``
    secret (for the asymmetric schemes: a key pair the endpoint does not know)."""
    source = copy.copy(h.runtime.app.sources[name])
    variable = source.secret_env
    assert variable is not None
    new, old = SECRETS[variable]
    secret = {"new": new, "old": old, "wrong": source.example_secret()}[which]
    if name == "postmark" and which == "wrong":
        secret = "hooks:not-the-password"
    assert not source.bind(name, {**ENV, variable: secret})
    return source


def deliver(source: _base.Source, case: Case, now: float | None = None, *, other: bool = False
            ) -> tuple[bytes, dict[str, str]]:
    data = case.other if other and case.other is not None else case.data
    return source.build_delivery(case.event_type, data, time.time() if now is None else now)


async def post(h: helpers.Harness, name: str, body: bytes, headers: Any) -> httpx.Response:
    return await h.client.post(f"/webhooks/{name}", content=body, headers=headers)


def outcome(r: httpx.Response) -> str | None:
    """``accepted``/``duplicate``: in the body, or (where the body is the provider's own answer,
    Discord's interaction response) in the ``x-solo-os-status`` header."""
    found = r.json().get("status") or r.headers.get("x-solo-os-status")
    return found if isinstance(found, str) else None


def event_id(r: httpx.Response) -> str | None:
    found = r.json().get("event_id") or r.headers.get("x-solo-os-event-id")
    return found if isinstance(found, str) else None


async def stored(h: helpers.Harness) -> list[Any]:
    return await h.store.list_events(store_mod.Filters(limit=0))


def redelivery(name: str, source: _base.Source, body: bytes, headers: dict[str, str]
               ) -> tuple[bytes, dict[str, str]]:
    """The same delivery as the provider sends it again a little later (signed afresh)."""
    later = time.time() + 5
    if name == "mailgun":  # the signature object is in the body; the event (and its id) stays
        assert isinstance(source, MailgunSource)
        document = _doc(body)
        document["signature"] = source.signature_object(later)
        body = orjson.dumps(document)
    kept = {k: v for k, v in headers.items() if k not in source.secret_headers}
    return body, {**kept, **source.sign(body, later, kept)}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_provider_contract(database_url: str, name: str) -> None:
    case = CASES[name]
    async with running(database_url) as h:
        source = h.runtime.app.sources[name]
        body, headers = deliver(signer(h, name, "new"), case)

        # forgeries first: nothing may be stored by them
        wrong_body, wrong_headers = deliver(signer(h, name, "wrong"), case)
        r = await post(h, name, wrong_body, wrong_headers)
        assert (r.status_code, r.json()) == (401, {"error": "invalid_signature"}), name
        if name == "mailgun":  # its signature is the body's "signature" object
            unsigned_body = orjson.dumps({k: v for k, v in _doc(body).items() if k != "signature"})
            r = await post(h, name, unsigned_body, headers)
        else:
            r = await post(h, name, body, {k: v for k, v in headers.items()
                                            if k not in source.secret_headers})
        assert r.status_code == 401, (name, r.text)
        if case.body_signed:
            r = await post(h, name, body + b" ", headers)
            assert r.status_code == 401, (name, "tampered body", r.text)
        if case.stale:
            old_body, old_headers = deliver(signer(h, name, "new"), case, time.time() - 400)
            r = await post(h, name, old_body, old_headers)
            assert r.status_code == 401, (name, "stale", r.text)
        assert await stored(h) == []

        first = await post(h, name, body, headers)
        assert first.status_code == 200, (name, first.text)
        assert outcome(first) == "accepted"
        again = await post(h, name, *redelivery(name, source, body, headers))
        assert (outcome(again), event_id(again)) == ("duplicate", event_id(first))
        if name == "discord":  # an interaction is answered with a deferred response, each time
            assert first.json() == again.json() == {"type": 5}

        [event] = await stored(h)
        assert event.type == TYPE_OF[name](body, headers) == case.event_type
        expected_key = case.key(body, headers)
        assert expected_key and event.idempotency_key == expected_key, name
        found = await h.store.get_event(event.id)
        assert found is not None
        assert found[1] == body  # the raw bytes, as signed
        assert not source.secret_headers & set(found[0].headers or {})

        # rotation: a delivery signed with the older configured secret is accepted too
        old_body, old_headers = deliver(signer(h, name, "old"), case, other=True)
        rotated = await post(h, name, old_body, old_headers)
        assert outcome(rotated) == "accepted", (name, rotated.text)


async def test_bodies_not_covered_by_the_scheme_still_need_the_credential(
    sqlite_url: str,
) -> None:
    """GitLab and Postmark authenticate the sender, not the body, and Mailgun signs a token
    (as their docs say): what each does sign is checked, and changing it is a 401."""
    async with running(sqlite_url) as h:
        body, headers = deliver(signer(h, "gitlab", "new"), CASES["gitlab"])
        r = await post(h, "gitlab", body, {**headers, "x-gitlab-token": "gitlab-new-token-12"})
        assert r.status_code == 401
        body, headers = deliver(signer(h, "postmark", "new"), CASES["postmark"])
        for value in ("Bearer x", "Basic %%%", "Basic " + _base.b64(b"hooks:new-password-")):
            assert (await post(h, "postmark", body, {**headers, "authorization": value})
                    ).status_code == 401
        body, headers = deliver(signer(h, "mailgun", "new"), CASES["mailgun"])
        document = _doc(body)
        document["signature"]["token"] += "x"
        r = await post(h, "mailgun", orjson.dumps(document), headers)
        assert r.status_code == 401
        assert await stored(h) == []


async def test_discord_ping_is_answered_only_when_signed(database_url: str) -> None:
    async with running(database_url) as h:
        discord = h.runtime.app.sources["discord"]
        body, headers = discord.build_delivery("PING", None, time.time())
        assert _doc(body)["type"] == 1
        r = await post(h, "discord", body, headers)
        assert (r.status_code, r.json()) == (200, {"type": 1})
        forged = {**headers, "x-signature-ed25519": "0" * 128}
        assert (await post(h, "discord", body, forged)).status_code == 401
        assert (await post(h, "discord", body, {})).status_code == 401
        webhook_ping = orjson.dumps({"version": 1, "application_id": "1", "type": 0})
        r = await post(h, "discord", webhook_ping, discord.sign(webhook_ping, time.time()))
        assert r.status_code == 200
        assert await stored(h) == []  # a handshake is not an event
        event_body, event_headers = discord.build_delivery(
            "APPLICATION_AUTHORIZED", {"user": {"id": "1"}}, time.time()
        )
        r = await post(h, "discord", event_body, event_headers)
        assert r.json()["status"] == "accepted"
        [event] = await stored(h)
        assert event.type == "APPLICATION_AUTHORIZED"
        assert event.idempotency_key == _base.digest_key(event_body)


async def test_twilio_signs_the_configured_public_url_not_the_one_the_process_sees(
    sqlite_url: str,
) -> None:
    async with running(sqlite_url) as h:
        twilio = h.runtime.app.sources["twilio"]
        body, headers = deliver(twilio, CASES["twilio"])
        # the client reached us at http://solo-os.test/webhooks/twilio; Twilio signed TWILIO_URL
        assert (await post(h, "twilio", body, headers)).status_code == 200
        other = copy.copy(twilio)
        other.public_url = copy.copy(twilio.public_url)
        other.public_url.value = "http://solo-os.test/webhooks/twilio"
        body, headers = deliver(other, CASES["twilio"])
        assert (await post(h, "twilio", body, headers)).status_code == 401
        # a JSON body is covered by no Twilio signature over form fields: refused
        json_body = b'{"MessageStatus": "delivered"}'
        signed = twilio.sign(b"", time.time())
        r = await post(h, "twilio", json_body, {**signed, "content-type": "application/json"})
        assert r.status_code == 401


# --- malformed headers: 401, never a 5xx -------------------------------------------------------

NOW = str(int(time.time()))
MALFORMED: list[tuple[str, Any]] = [
    ("paddle", {"paddle-signature": "ts=abc;h1=" + "0" * 64}),
    ("paddle", {"paddle-signature": "ts=1;ts=2;h1=" + "0" * 64}),
    ("paddle", {"paddle-signature": f"ts={NOW};h1=" + "z" * 64}),
    ("paddle", {"paddle-signature": f"ts={NOW}" + ";h1=00" * 40}),
    ("lemonsqueezy", {"x-signature": "sha256=" + "0" * 64}),
    ("lemonsqueezy", [("x-signature", "0" * 64), ("x-signature", "0" * 64)]),
    ("gitlab", {"x-gitlab-token": ""}),
    ("gitlab", {"x-gitlab-token": "x" * 9000}),
    ("gitlab", {"x-gitlab-token": b"gitlab-new-token-123\xff"}),
    ("discord", {"x-signature-timestamp": NOW, "x-signature-ed25519": "0" * 127}),
    ("discord", {"x-signature-timestamp": "-1", "x-signature-ed25519": "0" * 128}),
    ("discord", {"x-signature-timestamp": NOW, "x-signature-ed25519": "zz" * 64}),
    ("twilio", {"x-twilio-signature": "%%%", "content-type": "application/x-www-form-urlencoded"}),
    ("twilio", {"x-twilio-signature": "A" * 28, "x-twilio-webhooks-signature-settings":
                "algorithm=HMAC_MD5"}),
    ("twilio", {"x-twilio-signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "content-type": "application/x-www-form-urlencoded"}),
    ("postmark", {"authorization": b"Basic \xe9\xe9\xe9\xe9"}),
    ("postmark", {"authorization": "Basic"}),
    ("sendgrid", {"x-twilio-email-event-webhook-timestamp": NOW,
                  "x-twilio-email-event-webhook-signature": "MEUCIQ"}),
    ("sendgrid", {"x-twilio-email-event-webhook-timestamp": NOW,
                  "x-twilio-email-event-webhook-signature": "A" * 200}),
    ("sendgrid", {"x-twilio-email-event-webhook-timestamp": "1e9",
                  "x-twilio-email-event-webhook-signature": "MEUCIQ=="}),
    ("mailgun", {}),
    ("resend", {"svix-id": "m", "svix-timestamp": "now", "svix-signature": "v1,AAAA"}),
    ("clerk", {"svix-id": "m", "svix-timestamp": NOW, "svix-signature": "v1"}),
    ("intercom", {"x-hub-signature": "sha256=" + "0" * 64}),
    ("intercom", {"x-hub-signature": "sha1=" + "0" * 39}),
    ("linear", {"linear-signature": "0" * 64}),
    ("linear", {"linear-signature": "g" * 64}),
    ("square", {"x-square-hmacsha256-signature": "0" * 44}),
    ("square", {"x-square-signature": "anything"}),
    ("calendly", {"calendly-webhook-signature": f"t={NOW}"}),
    ("calendly", {"calendly-webhook-signature": "t=9" + "9" * 20 + ",v1=" + "0" * 64}),
    ("typeform", {"typeform-signature": "sha256=" + "@" * 44}),
    ("typeform", {"typeform-signature": "sha1=" + "A" * 27 + "="}),
    ("hubspot", {"x-hubspot-request-timestamp": NOW + "000", "x-hubspot-signature-v3": "==="}),
    ("hubspot", {"x-hubspot-request-timestamp": "x", "x-hubspot-signature-v3": "A" * 43 + "="}),
    ("hubspot", {"x-hubspot-signature": "0" * 64, "x-hubspot-signature-version": "v1"}),
]


async def test_malformed_signature_headers_are_401_and_store_nothing(database_url: str) -> None:
    bodies = [
        b'{"type": "x", "id": "evt_1", "signature": {"timestamp": "1", "token": "t",'
        b' "signature": "00"}, "webhookTimestamp": 1}',
        b"Body=hi&MessageSid=SM1",
    ]
    async with running(database_url) as h:
        for name, headers in MALFORMED:
            for body in bodies:
                r = await post(h, name, body, headers)
                assert (r.status_code, r.json()) == (401, {"error": "invalid_signature"}), (
                    name, headers
                )
        assert await stored(h) == []


# --- configuration ------------------------------------------------------------------------------


def test_misformed_or_missing_secrets_stop_the_start_naming_only_the_variable() -> None:
    bad = {
        "paddle": "pdl_live_apikey_01abc",
        "gitlab": "glpat-abcdefghijk",
        "discord": "not-a-public-key",
        "twilio": "AC" + "0" * 32,
        "postmark": "only-a-password",
        "sendgrid": "SG.abc.def",
        "mailgun": "pubkey-1234",
        "resend": "re_123456",
        "clerk": "sk_live_123",
        "intercom": "dG9rOmFiYw==",
        "linear": "lin_api_abc",
        "square": "EAAAEabc",
        "calendly": "eyJhbGciOi",
        "typeform": "tfp_abc",
        "hubspot": "pat-na1-abc",
        "lemonsqueezy": "eyJ0eXAiOiJKV1Qi",
    }
    assert set(bad) == set(CASES)
    for name, value in bad.items():
        source = CASES[name].factory()
        problems = source.bind(name, {**ENV, str(source.secret_env): value})
        assert problems, name
        assert all(value not in p for p in problems), (name, problems)
        assert any(p.startswith(f"{source.secret_env}: ") for p in problems), (name, problems)
        missing = CASES[name].factory().bind(name, {})
        assert any(f"{source.secret_env}: not set" in p for p in missing), (name, missing)


def test_sources_that_sign_a_url_need_it_configured() -> None:
    for factory, kind in ((sources.twilio, "twilio"), (sources.square, "square"),
                          (sources.hubspot, "hubspot")):
        problems = factory().bind(kind, ENV)
        assert any("url=" in p and "public_url_env=" in p for p in problems), problems
        problems = factory(public_url_env="MY_URL").bind(kind, {**ENV, "MY_URL": "ftp://x"})
        assert any(p.startswith("MY_URL: ") for p in problems), problems
        with pytest.raises(errors.ConfigError, match="not both"):
            factory(url="https://a.example/x", public_url_env="MY_URL")
        with pytest.raises(errors.ConfigError, match="absolute"):
            factory(url="/webhooks/x")
        assert not factory(verify=False).bind(kind, {})  # nothing to verify: no URL needed


def test_a_public_key_cannot_sign_and_says_how_to_get_a_test_key() -> None:
    for factory, variable, secret in (
        (sources.discord, "DISCORD_PUBLIC_KEY", _keys.ed25519_public_hex(DISCORD_NEW)),
        (sources.sendgrid, "SENDGRID_WEBHOOK_PUBLIC_KEY", _keys.p256_public_b64(SENDGRID_NEW)),
    ):
        source = factory()
        assert not source.bind("x", {variable: secret})
        with pytest.raises(errors.ConfigError, match="test-secret") as caught:
            source.build_delivery("PING", {}, time.time())
        assert secret not in str(caught.value)
        # the public key verifies what the matching test key signed
        signing = factory()
        assert not signing.bind("x", {variable: SECRETS[variable][0]})
        body, headers = signing.build_delivery("APPLICATION_COMMAND", {"a": 1}, time.time())
        source.authenticate(_base.DictHeaders(headers), body, time.time())
