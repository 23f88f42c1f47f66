"""``sources.intercom``: Intercom, ``X-Hub-Signature: sha1=<hex(HMAC-SHA1(secret, body))>``.

The secret is the app's client secret (Developer Hub > your app > Basic information), used as
UTF-8 text; no timestamp is signed. The type is the notification's ``topic``
(``conversation.user.created``, ``ping``), the key its ``id`` (``notif_...``), kept by
Intercom's retries. Reference: https://developers.intercom.com/docs/references/webhooks/webhook-models
(signed notifications)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "x-hub-signature"


class IntercomSource(_base.Source):
    kind = "intercom"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("dG9rO",)
    mistaken_for = "an Intercom access token, not the app's client secret"

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        scheme, sep, digest = _base.one_header(headers, HEADER).strip().partition("=")
        given = _base.hex_bytes(digest, 20) if sep and scheme == "sha1" else None
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha1(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "topic"), "field 'topic'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "id"))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {HEADER: "sha1=" + _base.hmac_sha1(self.signing_secret().encode("utf-8"), body).hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "type": "notification_event",
            "app_id": "solo-os-send",
            "data": {"type": "notification_event_data", "item": data},
            "links": {},
            "id": _base.new_id("notif_"),
            "topic": event_type,
            "delivery_status": "pending",
            "delivery_attempts": 1,
            "delivered_at": 0,
            "first_sent_at": int(now),
            "created_at": int(now),
        }
        headers = {"content-type": "application/json", "user-agent": "Intercom-Webhooks solo-os-send"}
        return _base.json_body(document), headers


def intercom(
    *,
    secret_env: str | None = "INTERCOM_CLIENT_SECRET",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> IntercomSource:
    """Intercom webhooks, verified with the app's client secret(s) in ``secret_env``.

    The type is ``topic``, the key ``id``. ``payload="data.item"`` hands the schema the
    conversation, contact or other object.
    """
    return IntercomSource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
