"""``sources.paddle``: Paddle Billing, ``Paddle-Signature: ts=<unix>;h1=<hex>``.

``h1 = hex(HMAC-SHA256(secret key, "{ts}:{raw body}"))`` with the notification destination's
secret key (``pdl_ntfset_...``) used as UTF-8 text. While a secret is rotated Paddle sends one
``h1`` per active key; any match is enough. A timestamp further than the tolerance from now,
either way, is refused (paddle-python-sdk ``Verifier`` does the same with 5 s; 300 s here, like
the other sources, because a retry is signed afresh anyway). Type ``event_type``
(``transaction.completed``), key ``event_id`` (``evt_...``), kept by Paddle's retries.
Reference: https://developer.paddle.com/webhooks/signature-verification
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _timestamped

HEADER = "paddle-signature"
# Keys users paste by mistake instead of the notification destination's secret key.
_NOT_SIGNING_SECRETS = ("pdl_live_apikey_", "pdl_sdbx_apikey_", "live_", "test_")


class PaddleSource(_base.Source):
    kind = "paddle"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = (
        "a Paddle API key or client-side token, not a notification"
        " destination's secret key (pdl_ntfset_...)"
    )

    def example_secret(self) -> str:
        return "pdl_ntfset_" + _base.new_id() + "_" + _base.new_id()[:24]

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        header = _timestamped.parse(
            _base.one_header(headers, HEADER), separator=";", timestamp_key="ts", signature_key="h1"
        )
        t = header.timestamp
        signed = f"{t}:".encode() + body  # paddle-python-sdk signs the parsed integer
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, header.signatures):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(t, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "event_type"), "field 'event_type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "event_id"))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        t = int(now)
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), f"{t}:".encode() + body)
        return {HEADER: f"ts={t};h1={mac.hex()}"}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "event_id": _base.new_id("evt_"),
            "event_type": event_type,
            "occurred_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "notification_id": _base.new_id("ntf_"),
            "data": data,
        }
        headers = {"content-type": "application/json", "user-agent": "Paddle solo-os-send"}
        return _base.json_body(document), headers


def paddle(
    *,
    secret_env: str | None = "PADDLE_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> PaddleSource:
    """Paddle Billing notifications, verified with the destination's secret key(s).

    The type is ``event_type`` (``subscription.created``), the key ``event_id``.
    ``payload="data"`` hands the schema the entity instead of the whole notification.
    """
    return PaddleSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
