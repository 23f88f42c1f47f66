"""Sources as pure decisions: verification tables, rotation, secret checks, type and key.

Every malformed header must end as ``SignatureError`` (the ingress's 401) with a stable reason,
never another exception; every source verifies what it builds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from solo_os import errors, sources
from solo_os.sources import DictHeaders, Source

NOW = 1_700_000_000
BODY = b'{"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}'
SECRETS = {
    "stripe": "whsec_stripe_test_secret",
    "github": "gh-secret",
    "shopify": "shop-secret",
    "slack": "8f742231b10e8888abcd99yyyzzz85a5",
    "standard_webhooks": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "hmac": "hmac-secret",
    "hmac_b64": "hmac-secret",
}
FACTORIES: dict[str, Callable[[], Source]] = {
    "stripe": lambda: sources.stripe(secret_env="SECRET"),
    "github": lambda: sources.github(secret_env="SECRET"),
    "shopify": lambda: sources.shopify(secret_env="SECRET"),
    "slack": lambda: sources.slack(secret_env="SECRET"),
    "standard_webhooks": lambda: sources.standard_webhooks(secret_env="SECRET"),
    "hmac": lambda: sources.hmac(secret_env="SECRET"),
    "hmac_b64": lambda: sources.hmac(secret_env="SECRET", encoding="base64", header="x-sig"),
}


def bound(kind: str, secret: str | None = None) -> Source:
    source = FACTORIES[kind]()
    assert source.bind(kind, {"SECRET": secret or SECRETS[kind]}) == []
    return source


def reason(source: Source, headers: dict[str, str] | list[tuple[str, str]], body: bytes = BODY,
           now: float = NOW) -> str | None:
    """The SignatureError's reason, or None when the delivery verifies."""
    try:
        source.verify(DictHeaders(headers), body, now)
    except errors.SignatureError as exc:
        return exc.reason
    return None


def hexmac(secret: str, message: bytes) -> str:
    return std_hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def b64mac(secret: str, message: bytes) -> str:
    mac = std_hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def stripe_header(t: Any = NOW, secret: str = SECRETS["stripe"], body: bytes = BODY) -> str:
    return f"t={t},v1={hexmac(secret, f'{t}.'.encode() + body)}"


def slack_headers(ts: str = str(NOW), secret: str = SECRETS["slack"]) -> dict[str, str]:
    return {
        "x-slack-request-timestamp": ts,
        "x-slack-signature": "v0=" + hexmac(secret, f"v0:{ts}:".encode() + BODY),
    }


def sw_headers(ts: str = str(NOW), msg_id: str = "msg_1") -> dict[str, str]:
    key = base64.b64decode(SECRETS["standard_webhooks"].removeprefix("whsec_"))
    mac = std_hmac.new(key, f"{msg_id}.{ts}.".encode() + BODY, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


GOOD_GITHUB = "sha256=" + hexmac(SECRETS["github"], BODY)
GOOD_SHOPIFY = b64mac(SECRETS["shopify"], BODY)
HUGE = "a" * 10_000

# (source, headers, expected reason); None means it verifies.
CASES: list[tuple[str, Any, str | None]] = [
    # Stripe
    ("stripe", {"stripe-signature": stripe_header()}, None),
    ("stripe", {"stripe-signature": stripe_header(NOW - 300)}, None),
    ("stripe", {"stripe-signature": stripe_header(NOW - 301)}, "timestamp_too_old"),
    ("stripe", {"stripe-signature": stripe_header(NOW + 3600)}, None),  # as stripe-python
    ("stripe", {}, "missing_header:stripe-signature"),
    ("stripe", {"stripe-signature": ""}, "missing_timestamp"),
    ("stripe", {"stripe-signature": "garbage"}, "missing_timestamp"),
    ("stripe", {"stripe-signature": f"t={NOW}"}, "missing_signature"),
    ("stripe", {"stripe-signature": f"t={NOW},v0={'0' * 64}"}, "missing_signature"),
    ("stripe", {"stripe-signature": f"t={NOW},v1=zz"}, "malformed_signature"),
    ("stripe", {"stripe-signature": f"t={NOW},v1={'0' * 63}"}, "malformed_signature"),
    ("stripe", {"stripe-signature": f"t={NOW},v1={'0' * 64}"}, "signature_mismatch"),
    ("stripe", {"stripe-signature": f"v1={'0' * 64}"}, "missing_timestamp"),
    ("stripe", {"stripe-signature": stripe_header() + f",t={NOW}"}, "repeated_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("abc")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("-5")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("1.5")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("9" * 400)}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("\u0661\u0662\u0663")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header(" 1700000000")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": stripe_header("")}, "malformed_timestamp"),
    ("stripe", {"stripe-signature": f"t={NOW}" + f",v1={'0' * 64}" * 33}, "too_many_signatures"),
    ("stripe", {"stripe-signature": "t=1," + HUGE}, "oversized_header:stripe-signature"),
    ("stripe", [("stripe-signature", stripe_header())] * 2, "repeated_header:stripe-signature"),
    ("stripe", {"stripe-signature": stripe_header(secret="whsec_other")}, "signature_mismatch"),
    # a bad v1 beside a good one does not spoil it (stripe-python compares each)
    ("stripe", {"stripe-signature": stripe_header() + ",v1=nothex"}, None),
    # GitHub
    ("github", {"x-hub-signature-256": GOOD_GITHUB}, None),
    ("github", {}, "missing_header:x-hub-signature-256"),
    ("github", {"x-hub-signature": "sha1=" + "0" * 40}, "missing_header:x-hub-signature-256"),
    ("github", {"x-hub-signature-256": GOOD_GITHUB[7:]}, "malformed_signature"),
    ("github", {"x-hub-signature-256": "sha1=" + GOOD_GITHUB[7:]}, "malformed_signature"),
    ("github", {"x-hub-signature-256": "sha256=" + "g" * 64}, "malformed_signature"),
    ("github", {"x-hub-signature-256": "sha256=" + GOOD_GITHUB[7:40]}, "malformed_signature"),
    ("github", {"x-hub-signature-256": GOOD_GITHUB + "\n"}, "malformed_signature"),
    ("github", {"x-hub-signature-256": "sha256=" + " ".join(["00"] * 32)}, "malformed_signature"),
    ("github", {"x-hub-signature-256": "sha256=" + "0" * 64}, "signature_mismatch"),
    ("github", {"x-hub-signature-256": HUGE}, "oversized_header:x-hub-signature-256"),
    ("github", [("x-hub-signature-256", GOOD_GITHUB)] * 2, "repeated_header:x-hub-signature-256"),
    # Shopify
    ("shopify", {"x-shopify-hmac-sha256": GOOD_SHOPIFY}, None),
    ("shopify", {}, "missing_header:x-shopify-hmac-sha256"),
    ("shopify", {"x-shopify-hmac-sha256": "not base64!"}, "malformed_signature"),
    ("shopify", {"x-shopify-hmac-sha256": GOOD_SHOPIFY[:-4]}, "malformed_signature"),
    ("shopify", {"x-shopify-hmac-sha256": GOOD_SHOPIFY.rstrip("=")}, "malformed_signature"),
    ("shopify", {"x-shopify-hmac-sha256": "é" * 44}, "malformed_signature"),
    ("shopify", {"x-shopify-hmac-sha256": base64.b64encode(b"0" * 32).decode()},
     "signature_mismatch"),
    ("shopify", [("x-shopify-hmac-sha256", GOOD_SHOPIFY)] * 2,
     "repeated_header:x-shopify-hmac-sha256"),
    # Slack
    ("slack", slack_headers(), None),
    ("slack", slack_headers(str(NOW - 300)), None),
    ("slack", slack_headers(str(NOW + 300)), None),
    ("slack", slack_headers(str(NOW - 301)), "timestamp_too_old"),
    ("slack", slack_headers(str(NOW + 301)), "timestamp_too_new"),
    ("slack", slack_headers("0"), "timestamp_too_old"),
    ("slack", slack_headers("9" * 15), "timestamp_too_new"),
    ("slack", slack_headers("9" * 16), "malformed_timestamp"),
    ("slack", slack_headers("1e9"), "malformed_timestamp"),
    ("slack", slack_headers(""), "malformed_timestamp"),
    ("slack", {"x-slack-signature": slack_headers()["x-slack-signature"]},
     "missing_header:x-slack-request-timestamp"),
    ("slack", {"x-slack-request-timestamp": str(NOW)}, "missing_header:x-slack-signature"),
    ("slack", {**slack_headers(), "x-slack-signature": "v1=" + "0" * 64}, "malformed_signature"),
    ("slack", {**slack_headers(), "x-slack-signature": "v0" + "0" * 64}, "malformed_signature"),
    ("slack", {**slack_headers(), "x-slack-signature": "v0=" + "0" * 64}, "signature_mismatch"),
    ("slack", [*slack_headers().items(), ("x-slack-request-timestamp", str(NOW))],
     "repeated_header:x-slack-request-timestamp"),
    # Standard Webhooks
    ("standard_webhooks", sw_headers(), None),
    ("standard_webhooks", sw_headers(str(NOW - 301)), "timestamp_too_old"),
    ("standard_webhooks", sw_headers(str(NOW + 301)), "timestamp_too_new"),
    ("standard_webhooks", {}, "missing_header:webhook-signature"),
    ("standard_webhooks", {k: v for k, v in sw_headers().items() if k != "webhook-id"},
     "missing_header:webhook-id"),
    ("standard_webhooks", {k: v for k, v in sw_headers().items() if k != "webhook-timestamp"},
     "missing_header:webhook-timestamp"),
    ("standard_webhooks", {**sw_headers(), "webhook-timestamp": "soon"}, "malformed_timestamp"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": "v1"}, "malformed_signature"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": "v1,@@@"}, "malformed_signature"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": "v2," + "A" * 44},
     "malformed_signature"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": "v1," + "A" * 43 + "="},
     "signature_mismatch"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": " ".join(["v1,x"] * 33)},
     "too_many_signatures"),
    ("standard_webhooks", {**sw_headers(), "webhook-id": "msg_2"}, "signature_mismatch"),
    ("standard_webhooks", {**sw_headers(), "webhook-signature": HUGE},
     "oversized_header:webhook-signature"),
    # Generic HMAC
    ("hmac", {"x-signature": "sha256=" + hexmac(SECRETS["hmac"], BODY)}, None),
    ("hmac", {"x-signature": hexmac(SECRETS["hmac"], BODY)}, None),
    ("hmac", {"x-signature": hexmac(SECRETS["hmac"], BODY).upper()}, None),
    ("hmac", {"x-signature": "sha256=zz"}, "malformed_signature"),
    ("hmac", {"x-signature": b64mac(SECRETS["hmac"], BODY)}, "malformed_signature"),
    ("hmac", {}, "missing_header:x-signature"),
    ("hmac_b64", {"x-sig": b64mac(SECRETS["hmac"], BODY)}, None),
    ("hmac_b64", {"x-sig": "sha256=" + b64mac(SECRETS["hmac"], BODY)}, None),
    ("hmac_b64", {"x-sig": hexmac(SECRETS["hmac"], BODY)}, "malformed_signature"),
    ("hmac_b64", {"x-signature": b64mac(SECRETS["hmac"], BODY)}, "missing_header:x-sig"),
]


@pytest.mark.parametrize(("kind", "headers", "expected"), CASES)
def test_verification_table(kind: str, headers: Any, expected: str | None) -> None:
    assert reason(bound(kind), headers) == expected


def test_reasons_are_short_words_that_carry_no_header_value() -> None:
    for kind, headers, _ in CASES:
        got = reason(bound(kind), headers)
        if got is not None:
            assert len(got) < 60
            values = headers.values() if isinstance(headers, dict) else [v for _, v in headers]
            assert not any(len(v) > 3 and v in got for v in values)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_rotation_accepts_every_configured_secret_and_only_those(kind: str) -> None:
    old = bound(kind, _other_secret(kind, "old"))
    new = bound(kind, _other_secret(kind, "new"))
    both = bound(kind, f"{_other_secret(kind, 'new')}, {_other_secret(kind, 'old')}")
    stranger = bound(kind, _other_secret(kind, "stranger"))
    for signer in (old, new):
        body, headers = signer.build_delivery("thing.happened", {"n": 1}, NOW)
        assert reason(both, headers, body) is None
        assert reason(stranger, headers, body) == "signature_mismatch"


def test_stripe_sends_one_v1_per_active_secret_during_a_roll() -> None:
    source = bound("stripe", "whsec_new")
    t = str(NOW)
    old = hexmac("whsec_old", f"{t}.".encode() + BODY)
    new = hexmac("whsec_new", f"{t}.".encode() + BODY)
    assert reason(source, {"stripe-signature": f"t={t},v1={old},v1={new}"}) is None
    assert reason(source, {"stripe-signature": f"t={t},v1={old}"}) == "signature_mismatch"


def _other_secret(kind: str, label: str) -> str:
    if kind == "standard_webhooks":
        return "whsec_" + base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()
    if kind == "stripe":
        return f"whsec_{label}"
    return f"{label}-secret"


# --- secrets at start-up ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_missing_secret_fails_closed_naming_the_variable(kind: str) -> None:
    for env in ({}, {"SECRET": ""}, {"SECRET": " , "}):
        source = FACTORIES[kind]()
        problems = source.bind("src", env)
        assert len(problems) == 1
        assert problems[0].startswith("SECRET: not set")
        with pytest.raises(errors.SignatureError):
            source.authenticate(DictHeaders({}), BODY, NOW)


@pytest.mark.parametrize(
    ("factory", "secret", "words"),
    [
        (sources.stripe, "sk_live_abc123", "API key"),
        (sources.stripe, "rk_test_abc123", "API key"),
        (sources.stripe, "whsec_ok,plainsecret", "secret #2"),
        (sources.standard_webhooks, "whsec_not*base64", "base64"),
        (sources.standard_webhooks, "whsec_c2hvcnQ=", "5-byte key"),
        (sources.slack, "xoxb-1234-abcd", "Slack token"),
        (sources.shopify, "shpat_0123456789", "access token"),
    ],
)
def test_secret_in_the_wrong_form_is_refused_without_echoing_it(
    factory: Any, secret: str, words: str
) -> None:
    problems = factory(secret_env="MY_SECRET").bind("src", {"MY_SECRET": secret})
    assert len(problems) == 1
    assert problems[0].startswith("MY_SECRET: ")
    assert words in problems[0]
    for part in secret.split(","):
        assert part not in problems[0]


def test_verify_false_needs_no_secret_and_accepts_anything() -> None:
    source = sources.stripe(secret_env=None, verify=False)
    assert source.bind("stripe", {}) == []
    source.authenticate(DictHeaders({}), BODY, NOW)  # no exception
    body, headers = source.build_delivery("invoice.paid", {}, NOW)
    assert "stripe-signature" not in headers
    assert orjson.loads(body)["type"] == "invoice.paid"


def test_rebinding_with_a_bad_secret_forgets_the_good_one() -> None:
    source = bound("github")
    assert source.bind("github", {}) != []
    with pytest.raises(errors.SignatureError, match="no_secret"):
        source.authenticate(DictHeaders({"x-hub-signature-256": GOOD_GITHUB}), BODY, NOW)


@pytest.mark.parametrize(
    "make",
    [
        lambda: sources.stripe(secret_env="S", tolerance=0),
        lambda: sources.slack(secret_env="S", tolerance=-1),
        lambda: sources.standard_webhooks(secret_env="S", tolerance=True),
        lambda: sources.stripe(secret_env="S", payload="data..object"),
        lambda: sources.stripe(secret_env="S", payload=""),
        lambda: sources.github(secret_env="lower-case-dash"),
        lambda: sources.shopify(secret_env="S", max_body_bytes=0),
        lambda: sources.hmac(secret_env="S", header="x signature"),
        lambda: sources.hmac(secret_env="S", type_field="a b"),
        lambda: sources.hmac(secret_env="S", encoding="base32"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_config_errors(make: Callable[[], Source]) -> None:
    with pytest.raises(errors.ConfigError):
        make()


def test_repr_never_shows_a_secret() -> None:
    for kind in FACTORIES:
        assert SECRETS[kind] not in repr(bound(kind))


# --- type, key and payload (the SPEC table) --------------------------------------------------


def _doc(source: Source, headers: dict[str, str], document: Any) -> tuple[Any, Any]:
    h = DictHeaders(headers)
    return source.event_type(h, document), source.idempotency_key(h, document)


def test_stripe_type_and_key_come_from_the_event() -> None:
    event = orjson.loads(BODY)
    assert _doc(bound("stripe"), {}, event) == ("invoice.paid", "evt_1")
    assert _doc(bound("stripe"), {}, {"data": {}}) == (None, None)
    assert _doc(bound("stripe"), {}, [1, 2]) == (None, None)


def test_stripe_payload_is_the_envelope_or_data_object() -> None:
    event = orjson.loads(BODY)
    assert sources.stripe().payload(event) == event
    assert sources.stripe(payload="event").payload(event) == event
    assert sources.stripe(payload="data.object").payload(event) == {"id": "in_1"}
    assert sources.stripe(payload="data.object").payload({"data": "x"}) is None


@pytest.mark.parametrize(
    ("headers", "document", "expected"),
    [
        ({"x-github-event": "issues", "x-github-delivery": "d-1"}, {"action": "opened"},
         ("issues.opened", "d-1")),
        ({"x-github-event": "push", "x-github-delivery": "d-2"}, {"ref": "main"}, ("push", "d-2")),
        ({"x-github-event": "ping"}, {"action": 5}, ("ping", None)),
        ({"x-github-delivery": "d-3"}, {"action": "opened"}, (None, "d-3")),
    ],
)
def test_github_type_is_event_header_plus_action(
    headers: dict[str, str], document: Any, expected: tuple[Any, Any]
) -> None:
    assert _doc(bound("github"), headers, document) == expected


def test_shopify_key_is_event_id_else_webhook_id() -> None:
    s = bound("shopify")
    both = {"x-shopify-topic": "orders/create", "x-shopify-event-id": "e1",
            "x-shopify-webhook-id": "w1"}
    assert _doc(s, both, {}) == ("orders/create", "e1")
    assert _doc(s, {"x-shopify-webhook-id": "w1"}, {}) == (None, "w1")


def test_slack_type_key_and_challenge() -> None:
    s = bound("slack")
    callback = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
    assert _doc(s, {}, callback) == ("app_mention", "Ev1")
    assert _doc(s, {}, {"type": "app_rate_limited"}) == ("app_rate_limited", None)
    assert s.challenge(DictHeaders({}), callback) is None
    handshake = {"type": "url_verification", "challenge": "abc", "token": "t"}
    assert s.challenge(DictHeaders({}), handshake) == {"challenge": "abc"}
    assert s.challenge(DictHeaders({}), {"type": "url_verification", "challenge": 1}) is None
    assert sources.slack(payload="event").payload(callback) == {"type": "app_mention"}
    assert bound("github").challenge(DictHeaders({}), handshake) is None


def test_standard_webhooks_key_is_the_message_id() -> None:
    s = bound("standard_webhooks")
    assert _doc(s, {"webhook-id": "msg_1"}, {"type": "user.created"}) == ("user.created", "msg_1")
    assert _doc(s, {"svix-id": "msg_2"}, {"type": "a"}) == ("a", "msg_2")
    assert sources.standard_webhooks(payload="data").payload({"data": {"x": 1}}) == {"x": 1}


@pytest.mark.parametrize(
    ("kwargs", "headers", "document", "expected"),
    [
        ({}, {"x-event-type": "a.b", "x-idempotency-key": "k"}, {}, ("a.b", "k")),
        ({"type_field": "kind"}, {"x-event-type": "ignored"}, {"kind": "c.d"}, ("c.d", None)),
        ({"key_field": "meta.id"}, {}, {"meta": {"id": 42}}, (None, "42")),
        ({"key_field": "id"}, {}, {"id": True}, (None, None)),
        ({"key_field": "id"}, {}, {"id": 1.5}, (None, None)),
        ({"type_header": "x-kind", "key_header": "x-key"}, {"x-kind": "t", "x-key": "k"}, {},
         ("t", "k")),
        ({"type_header": None, "key_header": None}, {"x-event-type": "t"}, {}, (None, None)),
    ],
)
def test_hmac_type_and_key_from_header_or_field(
    kwargs: dict[str, Any], headers: dict[str, str], document: Any, expected: tuple[Any, Any]
) -> None:
    assert _doc(sources.hmac(secret_env="S", **kwargs), headers, document) == expected


def test_repeated_type_or_key_headers_name_nothing() -> None:
    h = [("x-event-type", "a"), ("x-event-type", "b"), ("x-idempotency-key", "k"),
         ("x-idempotency-key", "k")]
    s = sources.hmac(secret_env="S")
    assert (s.event_type(DictHeaders(h), {}), s.idempotency_key(DictHeaders(h), {})) == (None, None)


def test_a_type_with_control_characters_is_a_payload_error() -> None:
    with pytest.raises(errors.PayloadError):
        bound("stripe").event_type(DictHeaders({}), {"type": "invoice\x00paid"})


def test_a_key_no_database_can_hold_is_replaced_by_its_digest() -> None:
    key = bound("stripe").idempotency_key(DictHeaders({}), {"id": "evt_\x00"})
    assert key == "sha256:" + hashlib.sha256(b"evt_\x00").hexdigest()


# --- building deliveries ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("event_type", ["thing.happened", "issues.opened", "orders/create"])
def test_every_source_verifies_what_it_builds(kind: str, event_type: str) -> None:
    source = bound(kind)
    data = {"id": "obj_1", "amount": 5}
    body, headers = source.build_delivery(event_type, data, NOW)
    assert reason(source, headers, body) is None
    document = orjson.loads(body)
    h = DictHeaders(headers)
    assert source.event_type(h, document) == event_type
    assert source.idempotency_key(h, document)
    assert source.challenge(h, document) is None
    # what is kept with the event holds no signature but still types and keys it
    kept = DictHeaders(source.stored_headers(h))
    assert not set(source.secret_headers) & {k for k, _ in kept.items()}
    assert source.event_type(kept, document) == event_type
    assert source.idempotency_key(kept, document) == source.idempotency_key(h, document)
    # tampering with one byte of the body breaks it
    assert reason(source, headers, body[:-1] + b" ") == "signature_mismatch"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (sources.stripe(secret_env="S", payload="data.object"), {"id": "obj_1"}),
        (sources.standard_webhooks(secret_env="S", payload="data"), {"id": "obj_1"}),
        (sources.shopify(secret_env="S"), {"id": "obj_1"}),
        (sources.github(secret_env="S"), {"id": "obj_1", "action": "opened"}),
        (sources.slack(secret_env="S", payload="event"), {"id": "obj_1", "type": "issues.opened"}),
        (sources.hmac(secret_env="S"), {"id": "obj_1"}),
    ],
)
def test_built_delivery_hands_the_data_to_the_schema(source: Source, expected: Any) -> None:
    source.bind("x", {"S": SECRETS["standard_webhooks"] if source.kind != "stripe" else "whsec_1"})
    body, _ = source.build_delivery("issues.opened", {"id": "obj_1"}, NOW)
    payload = source.payload(orjson.loads(body))
    if source.kind == "slack":
        payload = {k: v for k, v in payload.items() if k != "event_ts"}
    assert payload == expected


def test_slack_builds_a_url_verification_handshake() -> None:
    s = bound("slack")
    body, headers = s.build_delivery("url_verification", {}, NOW)
    assert reason(s, headers, body) is None
    reply = s.challenge(DictHeaders(headers), orjson.loads(body))
    assert reply is not None
    assert reply["challenge"] == orjson.loads(body)["challenge"]


def test_building_without_a_secret_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(errors.ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        sources.stripe().build_delivery("invoice.paid", {}, NOW)


def test_github_action_needs_object_data() -> None:
    with pytest.raises(errors.ConfigError, match="JSON object"):
        bound("github").build_delivery("issues.opened", [1, 2], NOW)


def test_stored_headers_drop_signatures_credentials_and_nul() -> None:
    s = bound("github")
    kept = s.stored_headers(DictHeaders({
        "X-Hub-Signature-256": "sha256=x", "X-Hub-Signature": "sha1=x", "Authorization": "Bearer t",
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "d", "X-Odd": "a\x00b",
    }))
    assert kept == {"x-github-event": "push", "x-github-delivery": "d"}
