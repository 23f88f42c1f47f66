"""Property-based fuzzing of every verifier: whatever arrives, the only failure is a
``SignatureError`` (the ingress's 401), and reading a verified document raises nothing but
``PayloadError`` (its 400). A correct signature always verifies; any change breaks it.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solo_os import errors, sources
from solo_os.sources import DictHeaders, Source

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KINDS: dict[str, tuple[Any, str]] = {
    "stripe": (lambda: sources.stripe(secret_env="S"), "whsec_fuzz,whsec_rotated"),
    "github": (lambda: sources.github(secret_env="S"), "gh-fuzz,gh-rotated"),
    "shopify": (lambda: sources.shopify(secret_env="S"), "shop-fuzz"),
    "slack": (lambda: sources.slack(secret_env="S"), "slack-fuzz"),
    "standard_webhooks": (lambda: sources.standard_webhooks(secret_env="S"), SW_SECRET),
    "hmac": (lambda: sources.hmac(secret_env="S"), "hmac-fuzz"),
    "hmac_b64": (
        lambda: sources.hmac(secret_env="S", encoding="base64", type_field="type", key_field="id"),
        "hmac-fuzz",
    ),
}
HEADER_NAMES = [
    "stripe-signature", "x-hub-signature-256", "x-github-event", "x-github-delivery",
    "x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-event-id", "x-shopify-webhook-id",
    "x-slack-signature", "x-slack-request-timestamp", "x-slack-retry-num", "webhook-id",
    "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature",
    "x-signature", "x-event-type", "x-idempotency-key", "content-type",
]


def bound(kind: str) -> Source:
    make, secret = KINDS[kind]
    source: Source = make()
    assert source.bind(kind, {"S": secret}) == []
    return source


numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**40).map(str),
    st.sampled_from(["", "0", "-0", "1e9", "1.5", "NaN", "inf", " 1", "1 ", "\u0661", "9" * 5000]),
)
hexes = st.text("0123456789abcdefABCDEFxyz ", max_size=70)
b64s = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ", max_size=50)
# Values shaped like the real headers, with every part open to mutation.
structured = st.one_of(
    st.builds(lambda t, v: f"t={t},v1={v}", numbers, hexes),
    st.builds(
        lambda t, vs: ",".join([f"t={t}", *(f"v1={v}" for v in vs)]), numbers, st.lists(hexes)
    ),
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from(["sha256", "v0", "v1", "sha1", ""]), hexes),
    st.builds(lambda vs: " ".join(f"v1,{v}" for v in vs), st.lists(b64s, max_size=40)),
    b64s,
    numbers,
)
header_values = st.one_of(st.text(max_size=300), structured, st.just("a" * 9000))
headers_strategy = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=20)), header_values
    ),
    max_size=12,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what a JSON parser hands over
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["type", "id", "event", "action", "data", "object", "event_id",
                         "challenge", "kind"]) | st.text(max_size=8),
        children,
        max_size=5,
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(
    headers=headers_strategy,
    body=st.binary(max_size=500),
    now=st.floats(min_value=0, max_value=1e11, allow_nan=False),
)
def test_verify_fails_only_with_signature_error(
    kind: str, headers: list[tuple[str, str]], body: bytes, now: float
) -> None:
    source = bound(kind)
    reason = None
    try:
        source.authenticate(DictHeaders(headers), body, now)
    except errors.SignatureError as exc:
        reason = exc.reason
    assert reason is None or (reason and "fuzz" not in reason)  # never a secret


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(document=json_values, headers=headers_strategy)
def test_reading_a_document_fails_only_with_payload_error(
    kind: str, document: Any, headers: list[tuple[str, str]]
) -> None:
    source = bound(kind)
    h = DictHeaders(headers)
    try:
        event_type = source.event_type(h, document)
        key = source.idempotency_key(h, document)
    except errors.PayloadError as exc:
        details = exc.details
        assert details
        return
    assert event_type is None or (isinstance(event_type, str) and event_type)
    assert key is None or (isinstance(key, str) and key and "\x00" not in key)
    source.payload(document)
    reply = source.challenge(h, document)
    assert reply is None or isinstance(reply, dict)
    kept = source.stored_headers(h)
    assert not set(kept) & source.secret_headers


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(
    data=json_values,
    event_type=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    now=st.integers(min_value=1_000_000_000, max_value=4_000_000_000),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_a_built_delivery_verifies_and_any_changed_byte_breaks_it(
    kind: str, data: Any, event_type: str, now: int, flip: int
) -> None:
    source = bound(kind)
    if kind in ("github", "slack", "hmac_b64") and not isinstance(data, dict):
        data = {"value": data}  # these providers put the type or key inside the object
    body, headers = source.build_delivery(event_type, data, now)
    source.authenticate(DictHeaders(headers), body, now)
    i = flip % len(body)
    changed = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
    with pytest.raises(errors.SignatureError):
        source.authenticate(DictHeaders(headers), changed, now)
    for name in source.secret_headers & set(headers):
        value = headers[name]
        j = flip % len(value)
        swapped = "0" if value[j] != "0" else "1"
        mangled = {**headers, name: value[:j] + swapped + value[j + 1 :]}
        with pytest.raises(errors.SignatureError):
            source.authenticate(DictHeaders(mangled), body, now)


@FUZZ
@given(key=st.binary(min_size=16, max_size=64), extra=st.sampled_from(["", "whsec_"]),
       strip_padding=st.booleans())
def test_standard_webhooks_accepts_any_well_formed_secret(
    key: bytes, extra: str, strip_padding: bool
) -> None:
    text = base64.b64encode(key).decode()
    secret = extra + (text.rstrip("=") if strip_padding else text)
    source = sources.standard_webhooks(secret_env="S")
    assert source.bind("sw", {"S": secret}) == []
    body, headers = source.build_delivery("t", {}, 1_700_000_000)
    source.authenticate(DictHeaders(headers), body, 1_700_000_000)
