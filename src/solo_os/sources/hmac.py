"""``sources.hmac``: the seed's generic scheme, HMAC-SHA256 of the raw body in one header."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from solo_os import errors
from solo_os.sources import _base

_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")  # an RFC 9110 token


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
        payload: str | None = None,
    ) -> None:
        super().__init__(
            secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
        )
        if encoding not in ("hex", "base64"):
            raise errors.ConfigError(
                f"sources.hmac: encoding must be 'hex' or 'base64', not {encoding!r}"
            )
        names = {"header": header, "type_header": type_header, "key_header": key_header}
        for what, name in names.items():
            if name is not None and not _HEADER.fullmatch(name):
                raise errors.ConfigError(f"sources.hmac: {what}={name!r} is not a header name")
        for what, path in (("type_field", type_field), ("key_field", key_field)):
            if path is not None and not _base.valid_path(path):
                raise errors.ConfigError(
                    f"sources.hmac: {what}={path!r} is not a field name or dotted path"
                )
        self.header = header.lower()
        self.encoding = encoding
        # A field given explicitly wins over the default header.
        self.type_field = type_field
        self.type_header = None if type_field else (type_header.lower() if type_header else None)
        self.key_field = key_field
        self.key_header = None if key_field else (key_header.lower() if key_header else None)
        self.secret_headers = frozenset({self.header})

    def _expected(self, body: bytes) -> list[bytes]:
        return [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        value = _base.one_header(headers, self.header).strip()
        # ``sha256=`` names the algorithm (GitHub's habit); senders may write it or not.
        if value[:7].lower() == "sha256=":
            value = value[7:]
        decode = _base.hex_digest if self.encoding == "hex" else _base.base64_digest
        given = decode(value)
        if given is None:
            raise errors.SignatureError("malformed_signature")
        if not _base.any_match(self._expected(body), [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        if self.type_field:
            value = _base.field(document, self.type_field)
            return _base.type_text(value, f"field {self.type_field!r}")
        if self.type_header:
            return _base.type_text(_base.header_value(headers, self.type_header), self.type_header)
        return None

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        if self.key_field:
            return _base.key_text(_base.field(document, self.key_field))
        if self.key_header:
            return _base.key_text(_base.header_value(headers, self.key_header))
        return None

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), body)
        if self.encoding == "hex":
            return {self.header: "sha256=" + mac.hex()}
        return {self.header: _base.b64(mac)}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = data
        if self.type_field:
            document = _base.with_field(data, self.type_field, event_type)
        if self.key_field and _base.field(document, self.key_field) is None:
            document = _base.with_field(document, self.key_field, _base.new_id("evt_"))
        headers = {"content-type": "application/json", "user-agent": "solo-os-send"}
        if self.type_header:
            headers[self.type_header] = event_type
        if self.key_header:
            headers[self.key_header] = _base.new_id("evt_")
        return _base.json_body(document), headers


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
    payload: str | None = None,
) -> HmacSource:
    """The seed's generic scheme: ``HMAC-SHA256(secret, raw body)`` in ``header``.

    The header holds ``sha256=<hex>`` or bare hex (``encoding="hex"``), or base64 (with or
    without ``sha256=``). The event type comes from ``type_header`` or the JSON field
    ``type_field`` (a dotted path); the idempotency key from ``key_header`` (the seed's
    ``x-idempotency-key``) or ``key_field``. A delivery with no key is keyed by the SHA-256 of
    its body. ``payload`` is a dotted path to the part the schema validates (default: all).
    Secrets are used as UTF-8 text; several, comma-separated, are all accepted (rotation).
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
        payload=payload,
    )
