"""``sources.mailgun``: Mailgun webhooks, the signature object in the body.

``{"signature": {"timestamp": "...", "token": "...", "signature": "<hex>"}, "event-data": {...}}``
with ``signature = hex(HMAC-SHA256(HTTP webhook signing key, timestamp + token))`` (legacy
form posts carry ``timestamp``, ``token`` and ``signature`` as fields). A timestamp further
than the tolerance from now is refused.

Mailgun signs the timestamp and a random token, **not the event**: a captured signature could
be replayed with other event data. The tolerance bounds that window, and the key is the
event's ``event-data.id`` (so a replayed event is a duplicate). The type is
``event-data.event`` (``delivered``, ``failed``, ``opened``). Reference:
https://documentation.mailgun.com/docs/mailgun/user-manual/events/webhooks/#securing-webhooks
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.core import json_decoder as _json
from solo_os.sources import _base, _decode

MAX_TOKEN_CHARS = 256  # Mailgun's tokens are 50 characters


class MailgunSource(_base.Source):
    kind = "mailgun"
    mistaken_prefixes = ("pubkey-",)
    mistaken_for = "Mailgun's public validation key, not the signing key"

    def _signature(self, headers: _base.Headers, body: bytes) -> tuple[str, str, str]:
        try:
            if _decode.is_form(headers):
                fields = dict(_decode.form_fields(body))
                parts: Any = fields
            else:
                parts = _base.field(_json.loads(body), "signature")
        except (errors.PayloadError, _json.JSONDecodeError):
            raise errors.SignatureError("malformed_body") from None
        if not isinstance(parts, dict):
            raise errors.SignatureError("missing_signature")
        values = [parts.get(k) for k in ("timestamp", "token", "signature")]
        if not all(isinstance(v, str) for v in values):
            raise errors.SignatureError("missing_signature")
        timestamp, token, signature = (str(v) for v in values)
        if len(token) > MAX_TOKEN_CHARS:
            raise errors.SignatureError("oversized_token")
        return timestamp, token, signature

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raw_timestamp, token, signature = self._signature(headers, body)
        timestamp = _base.parse_timestamp(raw_timestamp)
        given = _base.hex_digest(signature)
        if given is None:
            raise errors.SignatureError("malformed_signature")
        signed = (raw_timestamp + token).encode("utf-8", "surrogatepass")
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(timestamp, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        inner = _base.field(document, "event-data.event")
        if inner is not None:
            return _base.type_text(inner, "field 'event-data.event'")
        return _base.type_text(_base.field(document, "event"), "field 'event'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "event-data.id"))

    def signature_object(self, now: float) -> dict[str, str]:
        timestamp, token = str(int(now)), _base.new_id() + _base.new_id()[:18]
        mac = _base.hmac_sha256(
            self.signing_secret().encode("utf-8"), (timestamp + token).encode("ascii")
        )
        return {"timestamp": timestamp, "token": token, "signature": mac.hex()}

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {}  # the signature is part of the body: see compose

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        event: dict[str, Any] = {"id": _base.new_id(), "timestamp": now}
        if isinstance(data, dict):
            event.update(data)
        event["event"] = event_type
        if self.verify_signatures:
            signature = self.signature_object(now)
        else:
            signature = {"timestamp": str(int(now)), "token": "unsigned", "signature": "0" * 64}
        document = {"signature": signature, "event-data": event}
        headers = {"content-type": "application/json", "user-agent": "mailgun/solo-os-send"}
        return _base.json_body(document), headers


def mailgun(
    *,
    secret_env: str | None = "MAILGUN_WEBHOOK_SIGNING_KEY",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> MailgunSource:
    """Mailgun webhooks, verified with the HTTP webhook signing key(s) in ``secret_env``.

    The type is ``event-data.event``, the key ``event-data.id``. ``payload="event-data"``
    hands the schema the event itself.
    """
    return MailgunSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
