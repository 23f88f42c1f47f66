"""Property-based fuzzing of the webhook route (real ingress, real SQLite store, over ASGI):
whatever headers and body arrive at whichever source, the answer is 200, 400, 401, 404 or
413; never a 5xx, never an exception out of the app. Signed deliveries of arbitrary bytes
(the verifier passes, everything after it is exercised) also never yield a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from solo_os import App, sources
from tests import helpers

ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_fuzz_stripe",
    "GITHUB_WEBHOOK_SECRET": "fuzz-github",
    "SHOPIFY_WEBHOOK_SECRET": "fuzz-shopify",
    "SLACK_SIGNING_SECRET": "fuzz-slack",
    "SVIX_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "BILLING_WEBHOOK_SECRET": helpers.SECRET,
}
NAMES = ["stripe", "stripe-objects", "github", "shopify", "slack", "svix", "billing", "b64"]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz_app() -> App:
    app = App(service="fuzz")
    app.source("stripe", sources.stripe())
    app.source("stripe-objects", sources.stripe(payload="data.object"))
    app.source("github", sources.github())
    app.source("shopify", sources.shopify(max_body_bytes=1500))
    app.source("slack", sources.slack())
    app.source("svix", sources.standard_webhooks(secret_env="SVIX_WEBHOOK_SECRET"))
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    app.source(
        "b64",
        sources.hmac(
            secret_env="BILLING_WEBHOOK_SECRET", encoding="base64", type_field="kind.name",
            key_field="meta.id",
        ),
    )
    for name in NAMES:
        app.on(name, "*", name=f"all_{name.replace('-', '_')}")(lambda event, ctx: None)
    app.on("stripe-objects", "invoice.paid", schema=Obj)(lambda event, ctx: None)
    return app


class Obj(BaseModel):
    id: str
    amount: int


@pytest.fixture
async def harness(sqlite_url: str) -> AsyncIterator[helpers.Harness]:
    async with helpers.running(fuzz_app(), sqlite_url, roles=("serve",), env=ENV) as h:
        yield h


# Header names the sources read, plus anything; values are raw latin-1 bytes as on the wire.
SOURCE_HEADERS = [
    "stripe-signature", "x-hub-signature-256", "x-github-event", "x-github-delivery",
    "x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-event-id", "x-shopify-webhook-id",
    "x-slack-signature", "x-slack-request-timestamp", "x-slack-retry-num", "webhook-id",
    "webhook-timestamp", "webhook-signature", "svix-id", "svix-signature", "svix-timestamp",
    "x-signature", "x-event-type", "x-idempotency-key", "x-correlation-id", "traceparent",
    "content-type",
]
token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
wire_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=200
)
numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "abc", "1.5", "-0", "1e9", " 1", "\xb2", "9" * 7000]),
)
hexes = st.text("0123456789abcdefABCDEFxyz", max_size=70)
b64s = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-", max_size=50)
header_value = st.one_of(
    wire_text,
    numbers,
    b64s,
    st.builds(lambda t, v: f"t={t},v1={v}", numbers, hexes),
    st.builds(
        lambda t, vs: ",".join([f"t={t}", *(f"v1={v}" for v in vs)]), numbers, st.lists(hexes)
    ),
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from(["sha256", "v0", "v1", ""]), hexes),
    st.builds(lambda vs: " ".join(f"v1,{v}" for v in vs), st.lists(b64s, max_size=40)),
).map(lambda s: s.encode("latin-1"))
headers_strategy = st.lists(
    st.tuples(st.one_of(st.sampled_from(SOURCE_HEADERS), token), header_value), max_size=6
)
# The headers each source reads, each present or not, so every verifier's branches are reached.
RELEVANT = {
    "stripe": ["stripe-signature"],
    "stripe-objects": ["stripe-signature"],
    "github": ["x-hub-signature-256", "x-github-event", "x-github-delivery"],
    "shopify": ["x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-event-id"],
    "slack": ["x-slack-signature", "x-slack-request-timestamp"],
    "svix": ["webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-signature",
             "svix-timestamp"],
    "billing": ["x-signature", "x-event-type", "x-idempotency-key"],
    "b64": ["x-signature"],
    "no-such-source": [],
}


@st.composite
def deliveries(draw: Any) -> tuple[str, list[tuple[str, bytes]]]:
    name = draw(st.sampled_from(sorted(RELEVANT)))
    chosen = draw(st.fixed_dictionaries({}, optional={h: header_value for h in RELEVANT[name]}))
    return name, [*chosen.items(), *draw(headers_strategy)]


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3)
    | st.dictionaries(
        st.sampled_from(["type", "id", "event", "event_id", "challenge", "data", "object",
                         "action", "kind", "meta", "name"]) | st.text(max_size=6),
        c,
        max_size=5,
    ),
    max_leaves=15,
)
short = st.text(max_size=12)
# Documents shaped like the providers' (type, id, event, data...), so that signed ones get past
# typing and keying into validation and storage.
shaped = st.fixed_dictionaries(
    {"type": short, "id": short | st.integers(-(2**63), 2**63 - 1)},
    optional={
        "event": st.fixed_dictionaries({"type": short}, optional={"text": short}),
        "event_id": short,
        "challenge": short,
        "action": short,
        "kind": st.fixed_dictionaries({"name": short}),
        "meta": st.fixed_dictionaries({"id": short | st.integers(0, 10**6)}),
        "data": st.fixed_dictionaries(
            {"object": st.fixed_dictionaries({"id": short, "amount": st.integers(-9, 10**9)})
             | json_docs}
        ),
    },
)
bodies = st.one_of(
    st.binary(max_size=2500),
    st.binary(min_size=1400, max_size=1700),  # around the shopify source's limit
    json_docs.map(orjson.dumps),
    shaped.map(orjson.dumps),
    st.sampled_from([b"", b"{", b'"\\u0000"', b'{"id": "\\u0000"}', b"[" * 5000, b"1e999"]),
)
OK = {200, 400, 401, 404, 413}


@FUZZ
@given(delivery=deliveries(), body=bodies)
async def test_no_unsigned_input_yields_a_server_error(
    harness: helpers.Harness, delivery: tuple[str, list[tuple[str, bytes]]], body: bytes
) -> None:
    name, headers = delivery
    r = await harness.client.post(f"/webhooks/{name}", content=body, headers=headers)
    event(f"status {r.status_code}")  # --hypothesis-show-statistics shows the spread
    assert r.status_code in OK, (r.status_code, r.text)
    if name not in NAMES:
        assert r.status_code == 404
    if r.status_code == 200:
        assert r.json()  # only a correctly signed delivery gets here; fuzzing rarely signs


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    extra=headers_strategy,
    body=bodies,
    skew=st.integers(min_value=-200, max_value=200),
)
async def test_no_signed_input_yields_a_server_error(
    harness: helpers.Harness, name: str, extra: list[tuple[str, bytes]], body: bytes, skew: int
) -> None:
    source = harness.runtime.app.sources[name]
    signing = source.sign(body, time.time() + skew, {})
    # the signature headers win; anything else the fuzzer chose rides along
    keep = [(k, v) for k, v in extra if k.lower() not in {s.lower() for s in signing}]
    if name == "svix":  # its signature covers these two: the fuzzer may not replace them
        keep = [(k, v) for k, v in keep if not k.lower().startswith(("webhook-", "svix-"))]
    if name == "slack":
        keep = [(k, v) for k, v in keep if not k.lower().startswith("x-slack-request")]
    headers = [*keep, *((k, v.encode()) for k, v in signing.items())]
    r = await harness.client.post(f"/webhooks/{name}", content=body, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code in OK - {404}, (r.status_code, r.text)
    if name != "shopify" or len(body) <= 1500:
        assert r.status_code != 401, r.text  # correctly signed: judged on its content
