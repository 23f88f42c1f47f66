"""``sources.square``: Square, ``x-square-hmacsha256-signature``.

``base64(HMAC-SHA256(signature key, notification URL + raw body))``: the URL of the webhook
subscription, exactly as entered at Square, is part of what is signed; behind a proxy it is
not what the process sees, so it is configured (``url=`` or ``public_url_env=``). No
timestamp is signed. The legacy SHA-1 ``x-square-signature`` is never trusted. The type is
``type`` (``payment.updated``), the key ``event_id``, kept by Square's retries. Same algorithm
as squareup's ``WebhooksHelper.verify_signature``. Reference:
https://developer.squareup.com/docs/webhooks/step3validate
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _public_url

HEADER = "x-square-hmacsha256-signature"
LEGACY_HEADER = "x-square-signature"


class SquareSource(_public_url.PublicUrlSource):
    kind = "square"
    secret_headers = frozenset({HEADER, LEGACY_HEADER})
    mistaken_prefixes = ("EAAA",)
    mistaken_for = "a Square access token, not the webhook subscription's signature key"

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        given = _base.base64_digest(_base.one_header(headers, HEADER).strip())
        if given is None:
            raise errors.SignatureError("malformed_signature")
        signed = self.public_url.get().encode("utf-8") + body
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "type"), "field 'type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "event_id"))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        signed = self.public_url.get().encode("utf-8") + body
        return {HEADER: _base.b64(_base.hmac_sha256(self.signing_secret().encode("utf-8"), signed))}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        object_type = event_type.partition(".")[0]
        object_id = data.get("id") if isinstance(data, dict) else None
        document = {
            "merchant_id": "SOLO_OS_SEND",
            "type": event_type,
            "event_id": str(uuid.uuid4()),
            "created_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "data": {
                "type": object_type,
                "id": object_id if isinstance(object_id, str) else _base.new_id(),
                "object": {object_type: data},
            },
        }
        headers = {"content-type": "application/json", "user-agent": "Square Connect v2"}
        return _base.json_body(document), headers


def square(
    *,
    secret_env: str | None = "SQUARE_WEBHOOK_SIGNATURE_KEY",  # noqa: S107 - a variable name
    url: str | None = None,
    public_url_env: str | None = None,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> SquareSource:
    """Square webhooks, verified with the subscription's signature key(s) in ``secret_env``.

    ``url=`` (or ``public_url_env=``) is the notification URL as entered at Square. The type is
    ``type`` (``payment.updated``), the key ``event_id``.
    """
    return SquareSource(
        secret_env=secret_env,
        url=url,
        public_url_env=public_url_env,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
