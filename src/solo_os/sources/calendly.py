"""``sources.calendly``: Calendly, ``Calendly-Webhook-Signature: t=<unix>,v1=<hex>``.

``v1 = hex(HMAC-SHA256(webhook signing key, "{t}.{raw body}"))``, the key being the one given
when the webhook subscription was created, used as UTF-8 text. A timestamp older than the
tolerance (180 s by default, as Calendly's sample code does) is refused. The type is ``event``
(``invitee.created``, ``invitee.canceled``); deliveries carry no id, so the key is the event
with the resource's ``payload.uri`` (one invitee is created once), else the body's digest.
Reference: https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _timestamped

HEADER = "calendly-webhook-signature"
DEFAULT_TOLERANCE = 180


class CalendlySource(_base.Source):
    kind = "calendly"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = ("eyJ",)
    mistaken_for = (
        "a Calendly access token, not the webhook signing key (signing_key of"
        " the subscription)"
    )
    default_tolerance = DEFAULT_TOLERANCE

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        header = _timestamped.parse(
            _base.one_header(headers, HEADER), separator=",", timestamp_key="t", signature_key="v1"
        )
        t = header.timestamp
        signed = header.timestamp_text.encode("ascii") + b"." + body  # the timestamp's text, as sent
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, header.signatures):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(t, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "event"), "field 'event'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        event, uri = _base.field(document, "event"), _base.field(document, "payload.uri")
        if isinstance(event, str) and isinstance(uri, str) and uri:
            return _base.key_text(f"{event}:{uri}")
        return None

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        t = int(now)
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), f"{t}.".encode() + body)
        return {HEADER: f"t={t},v1={mac.hex()}"}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        payload = dict(data) if isinstance(data, dict) else data
        if isinstance(payload, dict):
            payload.setdefault(
                "uri", f"https://api.calendly.com/scheduled_events/{_base.new_id()}/invitees/x"
            )
        document = {
            "created_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "created_by": "https://api.calendly.com/users/solo-os-send",
            "event": event_type,
            "payload": payload,
        }
        headers = {"content-type": "application/json; charset=utf-8", "user-agent": "Calendly"}
        return _base.json_body(document), headers


def calendly(
    *,
    secret_env: str | None = "CALENDLY_WEBHOOK_SIGNING_KEY",  # noqa: S107 - a variable name
    tolerance: int = DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> CalendlySource:
    """Calendly webhooks, verified with the subscription's signing key(s) in ``secret_env``.

    The type is ``event`` (``invitee.created``). ``payload="payload"`` hands the schema the
    invitee (or other resource) instead of the envelope.
    """
    return CalendlySource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
