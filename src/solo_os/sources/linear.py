"""``sources.linear``: Linear, ``Linear-Signature: <hex(HMAC-SHA256(secret, body))>``.

The secret is the webhook's signing secret (``lin_wh_...``), used as UTF-8 text. The body's
``webhookTimestamp`` (milliseconds, signed with the rest of the body) must be within the
tolerance of now, 60 s by default as Linear advises, either way. The type is the body's
``type`` joined with its ``action`` (``Issue.create``, ``Comment.update``); the key the
``Linear-Delivery`` header, else the body's digest. Reference:
https://linear.app/developers/webhooks (securing webhooks)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.core import json_decoder as _json
from solo_os.sources import _base

HEADER = "linear-signature"
DELIVERY_HEADER = "linear-delivery"
EVENT_HEADER = "linear-event"
DEFAULT_TOLERANCE = 60


class LinearSource(_base.Source):
    kind = "linear"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("lin_api_", "lin_oauth_")
    mistaken_for = "a Linear API key, not the webhook's signing secret"
    default_tolerance = DEFAULT_TOLERANCE

    def example_secret(self) -> str:
        return "lin_wh_" + _base.new_id()

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        given = _base.hex_digest(_base.one_header(headers, HEADER).strip())
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")
        try:  # authentic now; its signed timestamp says whether it is a replay
            stamp = _base.field(_json.loads(body), "webhookTimestamp")
        except _json.JSONDecodeError:
            stamp = None
        if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 <= stamp < 10**15:
            raise errors.SignatureError("missing_timestamp")
        _base.check_age(stamp // 1000, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        kind = _base.type_text(_base.field(document, "type"), "field 'type'")
        if kind is None:
            return None
        action = _base.type_text(_base.field(document, "action"), "field 'action'")
        return f"{kind}.{action}" if action else kind

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.header_value(headers, DELIVERY_HEADER))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {HEADER: _base.hmac_sha256(self.signing_secret().encode("utf-8"), body).hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        kind, _, action = event_type.partition(".")
        document: dict[str, Any] = {
            "action": action or "create",
            "type": kind,
            "data": data,
            "createdAt": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "url": "https://linear.app/solo-os-send",
            "organizationId": str(uuid.uuid4()),
            "webhookTimestamp": int(now * 1000),
            "webhookId": str(uuid.uuid4()),
        }
        if not action:
            del document["action"]
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Linear-Webhook solo-os-send",
            DELIVERY_HEADER: str(uuid.uuid4()),
            EVENT_HEADER: kind,
        }
        return _base.json_body(document), headers


def linear(
    *,
    secret_env: str | None = "LINEAR_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    tolerance: int = DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> LinearSource:
    """Linear webhooks, verified with the signing secret(s) in ``secret_env``.

    The type is ``type.action`` (``Issue.create``), the key ``Linear-Delivery``.
    ``payload="data"`` hands the schema the issue, comment or other entity.
    """
    return LinearSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
