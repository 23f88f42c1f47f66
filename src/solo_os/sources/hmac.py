"""``sources.hmac``: the seed's generic scheme, HMAC-SHA256 of the raw body in one header."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from solo_os import errors
from solo_os.sources import _base


class HmacSource(_base.Source):
    kind = "hmac"

    def __init__(
        self,
        *,
        secret_env: str | None,
        header: str = "x-signature",
        encoding: Literal["hex", "base64"] = "hex",
        type_header: str | None = "x-event-type",
        type_field: str | None = None,
        key_header: str | None = "x-idempotency-key",
        key_field: str | None = None,
        verify: bool = True,
        max_body_bytes: int | None = None,
    ) -> None:
        super().__init__(secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes)
        if encoding not in ("hex", "base64"):
            raise errors.ConfigError(f"sources.hmac: encoding must be 'hex' or 'base64', not {encoding!r}")
        self.header = header.lower()
        self.encoding = encoding
        # A field given explicitly wins over the default header.
        self.type_field = type_field
        self.type_header = None if type_field else type_header
        self.key_field = key_field
        self.key_header = None if key_field else key_header
        self.secret_headers = frozenset({self.header})

    def _expected(self, body: bytes) -> list[bytes]:
        return [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        value = _base.one_header(headers, self.header).strip()
        try:
            if self.encoding == "hex":
                if value[:7].lower() == "sha256=":
                    value = value[7:]
                if len(value) != 64:
                    raise errors.SignatureError("malformed_signature")
                given = bytes.fromhex(value)
            else:
                given = base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            raise errors.SignatureError("malformed_signature") from None
        if not _base.any_match(self._expected(body), [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        if self.type_field:
            value = _base.field(document, self.type_field)
            return value if isinstance(value, str) else None
        if self.type_header:
            values = headers.getlist(self.type_header)
            return values[0] if len(values) == 1 else None
        return None

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        if self.key_field:
            value = _base.field(document, self.key_field)
            return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if self.key_header:
            values = headers.getlist(self.key_header)
            return values[0] if len(values) == 1 and values[0] else None
        return None

    def sign(self, body: bytes, now: float) -> dict[str, str]:
        if not self.secrets:
            raise errors.ConfigError(f"source {self.name!r} has no secret to sign with")
        mac = _base.hmac_sha256(self.secrets[0].encode("utf-8"), body)
        value = "sha256=" + mac.hex() if self.encoding == "hex" else base64.b64encode(mac).decode()
        return {self.header: value}


def hmac(
    *,
    secret_env: str | None = None,
    header: str = "x-signature",
    encoding: Literal["hex", "base64"] = "hex",
    type_header: str | None = "x-event-type",
    type_field: str | None = None,
    key_header: str | None = "x-idempotency-key",
    key_field: str | None = None,
    verify: bool = True,
    max_body_bytes: int | None = None,
) -> HmacSource:
    """The seed's generic scheme: ``HMAC-SHA256(secret, raw body)`` in ``header``.

    The header holds ``sha256=<hex>`` or bare hex (``encoding="hex"``), or base64. The event
    type comes from ``type_header`` or the top-level JSON ``type_field``; the idempotency key
    from ``key_header`` (the seed's ``x-idempotency-key``) or ``key_field``. A delivery with no
    key is keyed by the SHA-256 of its body.
    """
    return HmacSource(
        secret_env=secret_env,
        header=header,
        encoding=encoding,
        type_header=type_header,
        type_field=type_field,
        key_header=key_header,
        key_field=key_field,
        verify=verify,
        max_body_bytes=max_body_bytes,
    )
