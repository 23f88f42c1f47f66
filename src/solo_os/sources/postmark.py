"""``sources.postmark``: Postmark webhooks, authenticated with HTTP basic auth.

Postmark does not sign its webhooks. It sends the credentials written into the webhook's URL
(``https://user:password@your.host/webhooks/postmark``) as ``Authorization: Basic ...``, which is
compared in constant time with each ``user:password`` in ``secret_env`` (rotation: several,
comma-separated). Serve it over HTTPS only: the credentials are all that proves the sender.
The type is ``RecordType`` (``Delivery``, ``Bounce``, ``Open``, ``Click``, ``SpamComplaint``,
``SubscriptionChange``), ``Inbound`` for an inbound message; the key is ``RecordType:ID``
where the record has an ``ID`` (bounces, spam complaints), else the body's digest (a retry
sends the same body). References: https://postmarkapp.com/developer/webhooks/webhooks-overview
(protecting your webhook), https://postmarkapp.com/developer/webhooks/inbound-webhook
"""

from __future__ import annotations

import base64
import binascii
import secrets as secrets_mod
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "authorization"
MIN_PASSWORD_CHARS = 8


class PostmarkSource(_base.Source):
    kind = "postmark"
    secret_headers = frozenset({HEADER})

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        for i, secret in enumerate(secrets, 1):
            user, sep, password = secret.partition(":")
            if not sep or not user or not password:
                return f"secret #{i} is not user:password (the webhook URL's basic auth)"
            if len(password) < MIN_PASSWORD_CHARS:
                return (
                    f"secret #{i} has a password of {len(password)} characters;"
                    f" use at least {MIN_PASSWORD_CHARS} (random)"
                )
        return None

    def example_secret(self) -> str:
        return "postmark:" + secrets_mod.token_urlsafe(24)

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        scheme, _, encoded = _base.one_header(headers, HEADER).strip().partition(" ")
        if scheme.lower() != "basic":
            raise errors.SignatureError("not_basic_auth")
        try:
            credentials = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
            text = credentials.decode("utf-8")
        except (ValueError, binascii.Error):
            raise errors.SignatureError("malformed_credentials") from None
        if not _base.token_match(text, self.secrets):
            raise errors.SignatureError("credentials_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        record = _base.field(document, "RecordType")
        if record is not None:
            return _base.type_text(record, "field 'RecordType'")
        return "Inbound" if isinstance(document, dict) and "MessageID" in document else None

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        record = _base.field(document, "RecordType")
        record_id = _base.key_text(_base.field(document, "ID"))
        if isinstance(record, str) and record_id is not None:
            return f"{record}:{record_id}"
        return None

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {HEADER: "Basic " + _base.b64(self.signing_secret().encode("utf-8"))}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document: dict[str, Any] = {"MessageID": _base.new_id()}
        if isinstance(data, dict):
            document.update(data)
        if event_type != "Inbound":
            document["RecordType"] = event_type
        headers = {"content-type": "application/json", "user-agent": "Postmark solo-os-send"}
        return _base.json_body(document), headers


def postmark(
    *,
    secret_env: str | None = "POSTMARK_WEBHOOK_CREDENTIALS",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> PostmarkSource:
    """Postmark webhooks, authenticated by the ``user:password`` pair(s) in ``secret_env``.

    The type is ``RecordType`` (``Bounce``), ``Inbound`` for inbound mail; the key
    ``RecordType:ID`` where there is an ``ID``, else the body's digest.
    """
    return PostmarkSource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
