"""Property-based fuzzing of the further providers (real ingress, real SQLite store, over ASGI),
in the manner of test_providers_fuzz.py: whatever headers and body arrive unsigned at a new
source, the answer is 401 (never an acceptance, never a 5xx); deliveries the source itself
signed, with arbitrary bodies, JSON shaped like the providers' or form-encoded fields, are
judged on their content and never yield a 5xx.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from solo_os import App, sources
from solo_os.sources.mailgun import MailgunSource
from tests import helpers
from tests.integration.test_providers_fuzz import bodies, header_value, headers_strategy
from tests.integration.test_providers_more import CASES, ENV

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NAMES = sorted(CASES)
# Where the signature is not over the raw body alone, a body the fuzzer chose cannot carry a
# valid one: Twilio signs form fields, Linear's body must hold its signed webhookTimestamp,
# Mailgun's signature is inside the body.
BODY_BOUND = {"twilio", "linear", "mailgun"}
RELEVANT = {
    "paddle": ["paddle-signature"],
    "lemonsqueezy": ["x-signature", "x-event-name"],
    "gitlab": ["x-gitlab-token", "x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key"],
    "discord": ["x-signature-ed25519", "x-signature-timestamp"],
    "twilio": ["x-twilio-signature", "x-twilio-webhooks-signature-settings",
               "i-twilio-idempotency-token", "content-type"],
    "postmark": ["authorization"],
    "sendgrid": ["x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"],
    "mailgun": ["content-type"],
    "resend": ["svix-id", "svix-timestamp", "svix-signature", "webhook-signature"],
    "clerk": ["svix-id", "svix-timestamp", "svix-signature", "webhook-id"],
    "intercom": ["x-hub-signature"],
    "linear": ["linear-signature", "linear-delivery"],
    "square": ["x-square-hmacsha256-signature", "x-square-signature"],
    "calendly": ["calendly-webhook-signature"],
    "typeform": ["typeform-signature"],
    "hubspot": ["x-hubspot-signature-v3", "x-hubspot-request-timestamp"],
}
assert set(RELEVANT) == set(CASES)
signature_like = st.one_of(
    header_value,
    st.builds(lambda t, v: f"ts={t};h1={v}".encode(), st.integers(0, 2**40),
              st.text("0123456789abcdef", max_size=66)),
    st.builds(lambda v: f"Basic {v}".encode(),
              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=40)),
    st.sampled_from([b"application/x-www-form-urlencoded", b"application/json",
                     str(int(time.time())).encode(), str(int(time.time() * 1000)).encode(),
                     b"algorithm=HMAC_SHA256"]),
)
INT64 = st.integers(-(2**63), 2**63 - 1)
fields = st.dictionaries(
    st.sampled_from(["payload", "command", "text", "type", "event_id", "MessageSid", "MessageStatus",
                     "CallStatus", "trigger_id", "Body", "timestamp", "token", "signature"])
    | st.text(max_size=5),
    st.text(max_size=20) | st.sampled_from(['{"type": "block_actions"}', "[1]", "{", '{"a": "\\u0000"}']),
    max_size=6,
)
forms = fields.map(lambda f: urllib.parse.urlencode(f).encode())
shaped = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(max_size=8), "event_type": st.text(max_size=8), "type": st.text(max_size=8),
        "id": st.text(max_size=8) | INT64, "topic": st.text(max_size=8),
        "event": st.text(max_size=8), "RecordType": st.text(max_size=8), "ID": INT64,
        "action": st.text(max_size=8), "webhookTimestamp": INT64,
        "payload": st.fixed_dictionaries({"uri": st.text(max_size=8)}),
        "event-data": st.fixed_dictionaries({"id": st.text(max_size=8), "event": st.text(max_size=8)}),
    },
).map(orjson.dumps)
arrays = st.lists(
    st.fixed_dictionaries({"event": st.text(max_size=6), "sg_event_id": st.text(max_size=6)},
                          optional={"subscriptionType": st.text(max_size=6), "eventId": INT64}),
    max_size=3,
).map(orjson.dumps)


FORM_ENV = {**ENV, "SLACK_SIGNING_SECRET": "fuzz-form-slack", "GITHUB_WEBHOOK_SECRET": "fuzz-form-gh"}


def fuzz_app() -> App:
    app = App(service="fuzz-more")
    for name, case in CASES.items():
        app.source(name, case.factory())
        app.on(name, "*", name=f"all_{name}")(lambda event, ctx: None)
    app.source("slack", sources.slack())  # slash commands and interactivity are forms
    app.source("github", sources.github())  # so is GitHub's form content type
    app.on("slack", "*", name="all_slack")(lambda event, ctx: None)
    app.on("github", "*", name="all_github")(lambda event, ctx: None)
    return app


@pytest.fixture
async def harness(sqlite_url: str) -> AsyncIterator[helpers.Harness]:
    async with helpers.running(fuzz_app(), sqlite_url, roles=("serve",), env=FORM_ENV) as h:
        yield h


@st.composite
def deliveries(draw: Any) -> tuple[str, list[tuple[str, bytes]]]:
    name = draw(st.sampled_from(NAMES))
    chosen = draw(st.fixed_dictionaries({}, optional={h: signature_like for h in RELEVANT[name]}))
    return name, [*chosen.items(), *draw(headers_strategy)]


@FUZZ
@given(delivery=deliveries(), body=st.one_of(bodies, forms, shaped, arrays))
async def test_no_unsigned_input_is_accepted_or_a_server_error(
    harness: helpers.Harness, delivery: tuple[str, list[tuple[str, bytes]]], body: bytes
) -> None:
    name, headers = delivery
    r = await harness.client.post(f"/webhooks/{name}", content=body, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code == 401, (name, r.status_code, r.text)
    assert r.json() == {"error": "invalid_signature"}


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    extra=headers_strategy,
    body=st.one_of(bodies, forms, shaped, arrays),
    form=st.booleans(),
    skew=st.integers(min_value=-100, max_value=100),
)
async def test_no_signed_input_yields_a_server_error(
    harness: helpers.Harness, name: str, extra: list[tuple[str, bytes]], body: bytes, form: bool,
    skew: int,
) -> None:
    source = harness.runtime.app.sources[name]
    now = time.time() + skew
    if name == "linear" and body.startswith(b"{") and b"webhookTimestamp" not in body:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict):
            body = orjson.dumps({**document, "webhookTimestamp": int(now * 1000)})
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    if isinstance(source, MailgunSource):  # its signature goes in the body
        signature = source.signature_object(now)
        fields = {**signature, "event": "delivered", "x": body.decode("latin-1")}
        body = urllib.parse.urlencode(fields).encode()
        content_type = "application/x-www-form-urlencoded"
    # Twilio signs the form's fields: a body that is no form gets a signature over none
    signing = source.sign(body if name != "twilio" or _is_form(body) else b"", now, {})
    taken = {s.lower() for s in signing} | {"content-type", "x-twilio-webhooks-signature-settings"}
    keep = [(k, v) for k, v in extra if k.lower() not in taken
            and not k.lower().startswith(("webhook-", "svix-", "x-signature-"))]
    headers = [*keep, ("content-type", content_type.encode()),
               *((k, v.encode()) for k, v in signing.items())]
    r = await harness.client.post(f"/webhooks/{name}", content=body, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code in {200, 400, 401}, (name, r.status_code, r.text)
    if name not in BODY_BOUND:
        assert r.status_code != 401, (name, r.text)  # correctly signed: judged on its content
    if name == "twilio" and form and body and _is_form(body):
        assert r.status_code != 401, r.text


def _is_form(body: bytes) -> bool:
    try:
        urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                               max_num_fields=1000)
    except ValueError:
        return False
    return True


@FUZZ
@given(
    name=st.sampled_from(["slack", "github", "twilio"]),
    form=fields,
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
    event_header=st.sampled_from(["issues", "push", ""]),
)
async def test_signed_forms_are_decoded_never_a_server_error(
    harness: helpers.Harness, name: str, form: dict[str, str], raw: bytes, use_raw: bool,
    event_header: str,
) -> None:
    """Slack, GitHub and Twilio deliveries with form bodies, correctly signed: fields of any
    text, a ``payload`` field with JSON or not, bytes that are no form at all. Verified, then
    decoded or refused as invalid (400), never a 5xx; a parseable form is never a 401."""
    source = harness.runtime.app.sources[name]
    body = raw if use_raw else urllib.parse.urlencode(form).encode()
    if name == "twilio" and not _is_form(body):
        body = urllib.parse.urlencode(form).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", "x-github-event": event_header,
               "x-github-delivery": str(len(body)), **source.sign(body, time.time(), {})}
    r = await harness.client.post(f"/webhooks/{name}", content=body, headers=headers)
    event(f"{name} {r.status_code}")
    assert r.status_code in {200, 400}, (name, r.status_code, r.text)
