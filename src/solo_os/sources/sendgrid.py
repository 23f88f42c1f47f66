"""``sources.sendgrid``: SendGrid's Event Webhook, signed with ECDSA P-256.

``X-Twilio-Email-Event-Webhook-Signature`` is the base64 DER ECDSA (SHA-256) signature of
``X-Twilio-Email-Event-Webhook-Timestamp`` + raw body; ``secret_env`` holds the verification
*public key* SendGrid shows once signing is enabled (base64, ``MFkwEwYHKoZIzj0CAQYIKoZI...``;
several, comma-separated). A timestamp further than the tolerance from now is refused. The body
is an array of events: the type is their common ``event`` (``delivered``, ``bounce``), else
``batch``; the key is their ``sg_event_id`` values. Same algorithm as sendgrid-python's
``EventWebhook.verify_signature``. Reference:
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _batch, _keys

HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
MAX_SIGNATURE_BYTES = 80  # a DER ECDSA P-256 signature is at most 72 bytes


class SendGridSource(_base.Source):
    kind = "sendgrid"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("SG.",)
    mistaken_for = "a SendGrid API key, not the event webhook's public key"

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        if (problem := super().check_secrets(secrets)) is not None:
            return problem
        for i, secret in enumerate(secrets, 1):
            try:
                _keys.p256_key(secret)
            except ValueError as exc:
                return (
                    f"secret #{i} is {exc}: give the verification key shown under Mail"
                    " Settings > Event Webhook > Signature Verification"
                )
        return None

    def example_secret(self) -> str:
        return _keys.new_p256_test_key()

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raw_timestamp = _base.one_header(headers, TIMESTAMP_HEADER)
        timestamp = _base.parse_timestamp(raw_timestamp)
        text = _base.one_header(headers, HEADER).strip()
        try:
            signature = base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, binascii.Error):
            raise errors.SignatureError("malformed_signature") from None
        if not 8 <= len(signature) <= MAX_SIGNATURE_BYTES:
            raise errors.SignatureError("malformed_signature")
        keys = [_keys.p256_key(s)[0] for s in self.secrets]  # checked by bind()
        if not _keys.p256_verify(keys, signature, raw_timestamp.encode("ascii") + body):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(timestamp, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _batch.batch_type(document, "event")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _batch.batch_key(document, "sg_event_id", "sg:")

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        private = _keys.p256_key(self.signing_secret())[1]
        if private is None:
            raise errors.ConfigError(
                f"{self.secret_env} holds SendGrid's public key; only SendGrid can sign with its"
                " private key. To send test deliveries, set it to a test key"
                " (private:<base64>, made by `solo-os sources --test-secret NAME`)"
            )
        timestamp = str(int(now))
        signature = _keys.p256_sign(private, timestamp.encode("ascii") + body)
        return {TIMESTAMP_HEADER: timestamp, HEADER: _base.b64(signature)}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        items = data if isinstance(data, list) else [data]
        events = []
        for item in items:
            event: dict[str, Any] = {"email": "example@test.com", "timestamp": int(now)}
            if isinstance(item, dict):
                event.update(item)
            event["event"] = event_type
            event.setdefault("sg_event_id", _base.new_id())
            event.setdefault("sg_message_id", _base.new_id())
            events.append(event)
        headers = {"content-type": "application/json", "user-agent": "SendGrid Event API"}
        return _base.json_body(events), headers


def sendgrid(
    *,
    secret_env: str | None = "SENDGRID_WEBHOOK_PUBLIC_KEY",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> SendGridSource:
    """SendGrid Event Webhook batches, verified with the ECDSA public key(s) in ``secret_env``.

    The type is the events' common ``event`` (else ``batch``); the key their ``sg_event_id``s.
    The schema sees the array of events.
    """
    return SendGridSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
