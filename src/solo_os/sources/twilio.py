"""``sources.twilio``: Twilio's form posts, ``X-Twilio-Signature``.

``base64(HMAC-SHA1(auth token, URL + name1 + value1 + name2 + value2 ...))`` where URL is the
full URL Twilio called (query string included) and the POST fields are sorted by name (each
name's values sorted too). Behind a proxy that URL is not what the process sees, so it is
configured: ``url=`` or ``public_url_env=``. Like twilio-python's ``RequestValidator``, the URL
is tried as given, without its port and with the default port. Webhooks signed with a shared
key and ``X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256`` are HMAC-SHA256.

Only form bodies are accepted: a signature covers the fields, and a body that is not a form
would be covered by nothing. The type is the first of ``MessageStatus``, ``CallStatus``,
``SmsStatus`` present, else ``message`` (an incoming message); the key the
``I-Twilio-Idempotency-Token`` header, else ``MessageSid``/``CallSid`` + status.
Reference: https://www.twilio.com/docs/usage/security#validating-requests
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _decode, _public_url

HEADER = "x-twilio-signature"
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
IDEMPOTENCY_HEADER = "i-twilio-idempotency-token"
STATUS_FIELDS = ("MessageStatus", "CallStatus", "SmsStatus")
_SID = re.compile(r"(AC|SK|PN|MG)[0-9a-fA-F]{32}")


def signed_text(url: str, fields: list[tuple[str, str]]) -> bytes:
    """What Twilio signs: the URL, then each name with each of its values, sorted."""
    names: dict[str, set[str]] = {}
    for name, value in fields:
        names.setdefault(name, set()).add(value)
    parts = [url]
    for name in sorted(names):
        parts.extend(name + value for value in sorted(names[name]))
    return "".join(parts).encode("utf-8")


class TwilioSource(_public_url.PublicUrlSource):
    kind = "twilio"
    secret_headers = frozenset({HEADER})

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        for i, secret in enumerate(secrets, 1):
            if _SID.fullmatch(secret):
                return (
                    f"secret #{i} is a Twilio SID, not the Auth Token (Console > Account Info)"
                )
        return None

    def _fields(self, headers: _base.Headers, body: bytes) -> list[tuple[str, str]]:
        if not body:
            return []
        if not _decode.is_form(headers):
            raise errors.SignatureError("not_a_form")
        try:
            return _decode.form_fields(body)
        except errors.PayloadError:
            raise errors.SignatureError("malformed_form") from None

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        settings = _base.optional_header(headers, SETTINGS_HEADER) or ""
        algorithm = "HMAC_SHA1"
        for part in settings.split(","):
            key, sep, value = part.partition("=")
            if sep and key.strip() == "algorithm" and value.strip():
                algorithm = value.strip().upper()
        if algorithm not in ("HMAC_SHA1", "HMAC_SHA256"):
            raise errors.SignatureError("unsupported_algorithm")
        size = 20 if algorithm == "HMAC_SHA1" else 32
        given = _base.base64_bytes(_base.one_header(headers, HEADER).strip(), size)
        if given is None:
            raise errors.SignatureError("malformed_signature")
        fields = self._fields(headers, body)
        mac = _base.hmac_sha1 if algorithm == "HMAC_SHA1" else _base.hmac_sha256
        expected = [
            mac(secret.encode("utf-8"), signed_text(url, fields))
            for url in _public_url.port_variants(self.public_url.get())
            for secret in self.secrets
        ]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        for name in STATUS_FIELDS:
            value = _base.field(document, name)
            if value:
                return _base.type_text(value, f"field {name!r}")
        return "message" if isinstance(document, dict) else None

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        token = _base.header_value(headers, IDEMPOTENCY_HEADER)
        if token is not None:
            return _base.key_text(token)
        sid = _base.field(document, "MessageSid") or _base.field(document, "CallSid")
        if not isinstance(sid, str) or not sid:
            return None
        status = next((_base.field(document, n) for n in STATUS_FIELDS if _base.field(document, n)), None)
        return _base.key_text(f"{sid}:{status}" if isinstance(status, str) else sid)

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        fields = _decode.form_fields(body) if body else []
        text = signed_text(self.public_url.get(), fields)
        return {HEADER: _base.b64(_base.hmac_sha1(self.signing_secret().encode("utf-8"), text))}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        if not isinstance(data, dict):
            raise errors.ConfigError("twilio: the data must be a JSON object of form fields")
        fields = {k: v if isinstance(v, str) else _base.json_body(v).decode() for k, v in data.items()}
        call = "CallSid" in fields
        fields.setdefault("AccountSid", "AC" + _base.new_id())
        if not call:
            fields.setdefault("MessageSid", "SM" + _base.new_id())
        if event_type != "message":
            fields["CallStatus" if call else "MessageStatus"] = event_type
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "user-agent": "TwilioProxy/1.1 solo-os-send",
            IDEMPOTENCY_HEADER: _base.new_id("solo-"),
        }
        return urllib.parse.urlencode(fields).encode("ascii"), headers


def twilio(
    *,
    secret_env: str | None = "TWILIO_AUTH_TOKEN",  # noqa: S107 - a variable name
    url: str | None = None,
    public_url_env: str | None = None,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> TwilioSource:
    """Twilio webhooks (messaging, voice status callbacks), verified with the Auth Token(s).

    ``url=`` (or ``public_url_env=``) is the URL configured at Twilio, exactly as there.
    The handler receives the form's fields as a dict of strings.
    """
    return TwilioSource(
        secret_env=secret_env,
        url=url,
        public_url_env=public_url_env,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
