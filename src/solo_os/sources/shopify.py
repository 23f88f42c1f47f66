"""``sources.shopify``: ``X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, raw body))``.

The secret is the app's client secret (or, for a webhook made in the shop admin, the key
shown there), used as UTF-8 text. No timestamp is signed. Shopify retries a failed delivery
8 times over 4 hours with the same ``X-Shopify-Event-Id``, the idempotency key (older API
versions send only ``X-Shopify-Webhook-Id``, used instead). The type is ``X-Shopify-Topic``
(``orders/create``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
EVENT_ID_HEADER = "x-shopify-event-id"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
# Admin API access tokens users paste by mistake instead of the client secret.
_NOT_SIGNING_SECRETS = ("shpat_", "shpca_", "shppa_")


class ShopifySource(_base.Source):
    kind = "shopify"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = "a Shopify access token, not the app's client secret that signs webhooks"

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        given = _base.base64_digest(_base.one_header(headers, HEADER).strip())
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.header_value(headers, TOPIC_HEADER), TOPIC_HEADER)

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(
            _base.header_value(headers, EVENT_ID_HEADER)
            or _base.header_value(headers, WEBHOOK_ID_HEADER)
        )

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), body)
        return {HEADER: _base.b64(mac)}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        headers = {
            "content-type": "application/json",
            "user-agent": "Shopify-Captain-Hook solo-os-send",
            TOPIC_HEADER: event_type,
            EVENT_ID_HEADER: str(uuid.uuid4()),
            WEBHOOK_ID_HEADER: str(uuid.uuid4()),
            "x-shopify-triggered-at": datetime.fromtimestamp(now, UTC).isoformat(),
            "x-shopify-shop-domain": "solo-os-send.myshopify.com",
        }
        return _base.json_body(data), headers


def shopify(
    *,
    secret_env: str | None = "SHOPIFY_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> ShopifySource:
    """Shopify webhooks, verified with the client secret(s) in ``secret_env``.

    The type is ``X-Shopify-Topic`` (``orders/create``), the key ``X-Shopify-Event-Id`` (else
    ``X-Shopify-Webhook-Id``). ``payload`` is a dotted path to the part the schema validates
    (default: the whole body, which is the resource itself).
    """
    return ShopifySource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
