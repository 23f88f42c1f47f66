"""``sources.standard_webhooks``: the Standard Webhooks specification (Svix and its users).

Headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (or Svix's own
``svix-id``/``-timestamp``/``-signature``). The secret is ``whsec_`` + base64 of the key;
``sig = base64(HMAC-SHA256(key, "{id}.{timestamp}.{raw body}"))`` and the signature header is
a space-separated list of ``v1,<sig>`` (one per active secret; other versions, like the
asymmetric ``v1a``, are skipped). Timestamps more than 300 s away from now, either way, are
refused. The message id is the idempotency key: a retry keeps it.
"""

from __future__ import annotations

import base64
import binascii
import secrets as secrets_mod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base

PREFIXES = ("webhook-", "svix-")
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_KEY_BYTES = 16  # the spec asks for 24 to 64; below 16 it is not a signing key at all
MAX_SIGNATURES = 32  # one per active secret; more than this is not a sender following the spec


def decode_secret(secret: str) -> bytes | None:
    """The HMAC key in a ``whsec_<base64>`` secret (prefix optional, padding optional)."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode((text + "=" * (-len(text) % 4)).encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return None


class StandardWebhooksSource(_base.Source):
    kind = "standard_webhooks"
    secret_headers = frozenset({"webhook-signature", "svix-signature"})

    def example_secret(self) -> str:
        return SECRET_PREFIX + base64.b64encode(secrets_mod.token_bytes(24)).decode("ascii")

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        if (problem := super().check_secrets(secrets)) is not None:
            return problem  # a preset's mistaken_prefixes (Clerk's API keys)
        for i, secret in enumerate(secrets, 1):
            key = decode_secret(secret)
            if key is None:
                return (
                    f"secret #{i} is not a Standard Webhooks secret"
                    f" ({SECRET_PREFIX} followed by base64)"
                )
            if len(key) < MIN_KEY_BYTES:
                return (
                    f"secret #{i} holds a {len(key)}-byte key;"
                    f" a signing key has at least {MIN_KEY_BYTES}"
                )
        return None

    def _prefix(self, headers: _base.Headers) -> str:
        """``webhook-`` where the sender uses the spec's names, else Svix's ``svix-``."""
        for prefix in PREFIXES:
            if headers.getlist(prefix + "signature"):
                return prefix
        raise errors.SignatureError("missing_header:webhook-signature")

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        prefix = self._prefix(headers)
        msg_id = _base.one_header(headers, prefix + "id")
        raw_timestamp = _base.one_header(headers, prefix + "timestamp")
        value = _base.one_header(headers, prefix + "signature")
        timestamp = _base.parse_timestamp(raw_timestamp)
        given: list[bytes] = []
        entries = value.split()
        if len(entries) > MAX_SIGNATURES:
            raise errors.SignatureError("too_many_signatures")
        for entry in entries:
            version, sep, sig = entry.partition(",")
            if sep and version == "v1" and (raw := _base.base64_digest(sig)) is not None:
                given.append(raw)
        if not given:
            raise errors.SignatureError("malformed_signature")
        signed = _base.wire_bytes(msg_id) + f".{timestamp}.".encode() + body
        keys = [k for k in map(decode_secret, self.secrets) if k]  # checked by bind()
        expected = [_base.hmac_sha256(key, signed) for key in keys]
        if not _base.any_match(expected, given):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(timestamp, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "type"), "field 'type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        for prefix in PREFIXES:
            if (msg_id := _base.header_value(headers, prefix + "id")) is not None:
                return _base.key_text(msg_id)
        return None

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        key = decode_secret(self.signing_secret())
        if key is None:  # bind() checked the form; this is a source that was never bound
            raise errors.ConfigError(f"{self.secret_env}: not a Standard Webhooks secret")
        msg_id = (headers or {}).get("webhook-id") or _base.new_id("msg_")
        timestamp = str(int(now))
        mac = _base.hmac_sha256(key, f"{msg_id}.{timestamp}.".encode() + body)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + _base.b64(mac),
        }

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "type": event_type,
            "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        headers = {
            "content-type": "application/json",
            "user-agent": "solo-os-send",
            "webhook-id": _base.new_id("msg_"),
        }
        return _base.json_body(document), headers


def standard_webhooks(
    *,
    secret_env: str | None = None,
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> StandardWebhooksSource:
    """Webhooks signed per standardwebhooks.com (Svix, Resend, Clerk, Lemon... and others).

    ``secret_env`` holds ``whsec_...`` (several, comma-separated, during a rotation). The type
    is the body's ``type``, the key the ``webhook-id`` header. ``payload="data"`` hands the
    schema the ``data`` object instead of the whole message.
    """
    return StandardWebhooksSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
