"""``sources.hubspot``: HubSpot, ``X-HubSpot-Signature-v3``.

``base64(HMAC-SHA256(app client secret, "POST" + URI + raw body + timestamp))`` with the
``X-HubSpot-Request-Timestamp`` header (milliseconds) as sent; a timestamp older than the
tolerance (300 s, as hubspot-api-client's ``Signature``) is refused. URI is the full URL
HubSpot called, configured because of proxies (``url=`` or ``public_url_env=``). The body is
an array of up to 100 events: the type is their common ``subscriptionType``
(``contact.creation``), else ``batch``; the key is their ``eventId`` values. Reference:
https://developers.hubspot.com/docs/api/webhooks/validating-requests
"""

from __future__ import annotations

import secrets as secrets_mod
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _batch, _public_url

HEADER = "x-hubspot-signature-v3"
TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
OLD_HEADERS = ("x-hubspot-signature", "x-hubspot-signature-version")  # v1/v2: not trusted


class HubSpotSource(_public_url.PublicUrlSource):
    kind = "hubspot"
    secret_headers = frozenset({HEADER, OLD_HEADERS[0]})
    mistaken_prefixes = ("pat-", "CKT")
    mistaken_for = "a HubSpot access token, not the app's client secret"

    def example_secret(self) -> str:
        return str(secrets_mod.token_hex(4)) + "-" + secrets_mod.token_hex(14)

    def _signed(self, timestamp: str, body: bytes) -> bytes:
        return b"POST" + self.public_url.get().encode("utf-8") + body + timestamp.encode("ascii")

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raw_timestamp = _base.one_header(headers, TIMESTAMP_HEADER)
        millis = _base.parse_timestamp(raw_timestamp)
        given = _base.base64_digest(_base.one_header(headers, HEADER).strip())
        if given is None:
            raise errors.SignatureError("malformed_signature")
        signed = self._signed(raw_timestamp, body)
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(millis // 1000, now, self.tolerance, future=False)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _batch.batch_type(document, "subscriptionType")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _batch.batch_key(document, "eventId", "hs:")

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        timestamp = str(int(now * 1000))
        mac = _base.hmac_sha256(
            self.signing_secret().encode("utf-8"), self._signed(timestamp, body)
        )
        return {TIMESTAMP_HEADER: timestamp, HEADER: _base.b64(mac)}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        items = data if isinstance(data, list) else [data]
        events = []
        for n, item in enumerate(items):
            event: dict[str, Any] = {
                "eventId": secrets_mod.randbelow(2**31) + n,
                "subscriptionId": 1,
                "portalId": 1,
                "appId": 1,
                "occurredAt": int(now * 1000),
                "attemptNumber": 0,
                "objectId": 1,
                "changeSource": "CRM",
            }
            if isinstance(item, dict):
                event.update(item)
            event["subscriptionType"] = event_type
            events.append(event)
        headers = {"content-type": "application/json", "user-agent": "HubSpot Connect 2.0"}
        return _base.json_body(events), headers


def hubspot(
    *,
    secret_env: str | None = "HUBSPOT_CLIENT_SECRET",  # noqa: S107 - a variable name
    url: str | None = None,
    public_url_env: str | None = None,
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> HubSpotSource:
    """HubSpot app webhooks (v3 signatures), verified with the app's client secret(s).

    ``url=`` (or ``public_url_env=``) is the target URL as set in the app's webhook settings.
    The type is the events' common ``subscriptionType`` (else ``batch``); the key their
    ``eventId`` values. The schema sees the array of events.
    """
    return HubSpotSource(
        secret_env=secret_env,
        url=url,
        public_url_env=public_url_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
