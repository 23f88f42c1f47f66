"""``sources.typeform``: Typeform, ``Typeform-Signature: sha256=<base64(HMAC-SHA256(secret, body))>``.

The secret is the one set on the form's webhook (Connect > Webhooks > Edit > Secret), used as
UTF-8 text; no timestamp is signed. The type is ``event_type`` (``form_response``), the key
``event_id``, kept by Typeform's retries. Reference:
https://www.typeform.com/developers/webhooks/secure-your-webhooks/
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "typeform-signature"


class TypeformSource(_base.Source):
    kind = "typeform"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("tfp_",)
    mistaken_for = "a Typeform personal access token, not the webhook secret"

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        scheme, sep, digest = _base.one_header(headers, HEADER).strip().partition("=")
        given = _base.base64_digest(digest) if sep and scheme == "sha256" else None
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "event_type"), "field 'event_type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "event_id"))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), body)
        return {HEADER: "sha256=" + _base.b64(mac)}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        response = dict(data) if isinstance(data, dict) else data
        if isinstance(response, dict):
            response.setdefault(
                "submitted_at", datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
            )
        document = {
            "event_id": _base.new_id().upper()[:26],
            "event_type": event_type,
            "form_response": response,
        }
        headers = {"content-type": "application/json", "user-agent": "Typeform Webhooks"}
        return _base.json_body(document), headers


def typeform(
    *,
    secret_env: str | None = "TYPEFORM_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> TypeformSource:
    """Typeform webhooks, verified with the webhook secret(s) in ``secret_env``.

    The type is ``event_type``, the key ``event_id``. ``payload="form_response"`` hands the
    schema the response itself.
    """
    return TypeformSource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
