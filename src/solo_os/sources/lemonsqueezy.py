"""``sources.lemonsqueezy``: Lemon Squeezy, ``X-Signature: <hex(HMAC-SHA256(secret, body))>``.

The signing secret is the one typed in the webhook's settings (6 to 40 characters), used as
UTF-8 text. No timestamp is signed. The type is the ``X-Event-Name`` header (the body's
``meta.event_name`` carries the same); a delivery has no id of its own, so the key is the
digest of the body and an identical retry is a duplicate.
Reference: https://docs.lemonsqueezy.com/help/webhooks/signing-requests
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "x-signature"
EVENT_HEADER = "x-event-name"


class LemonSqueezySource(_base.Source):
    kind = "lemonsqueezy"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("eyJ",)
    mistaken_for = "a Lemon Squeezy API key, not the webhook's signing secret"

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        given = _base.hex_digest(_base.one_header(headers, HEADER).strip())
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        named = _base.header_value(headers, EVENT_HEADER)
        if named is not None:
            return _base.type_text(named, EVENT_HEADER)
        return _base.type_text(_base.field(document, "meta.event_name"), "field 'meta.event_name'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return None  # no delivery id: the body's digest

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {HEADER: _base.hmac_sha256(self.signing_secret().encode("utf-8"), body).hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "meta": {"event_name": event_type, "test_mode": True, "webhook_id": _base.new_id()},
            "data": data,
        }
        headers = {
            "content-type": "application/json",
            "user-agent": "LemonSqueezy-Hookshot solo-os-send",
            EVENT_HEADER: event_type,
        }
        return _base.json_body(document), headers


def lemonsqueezy(
    *,
    secret_env: str | None = "LEMONSQUEEZY_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> LemonSqueezySource:
    """Lemon Squeezy webhooks, verified with the signing secret(s) in ``secret_env``.

    The type is ``X-Event-Name`` (``order_created``); the key is the body's digest.
    ``payload="data"`` hands the schema the resource object.
    """
    return LemonSqueezySource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
