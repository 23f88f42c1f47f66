"""``sources.stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``.

``v1 = hex(HMAC-SHA256(secret, "{t}.{raw body}"))`` where the secret is the endpoint's signing
secret used as UTF-8 text, ``whsec_`` prefix included (it is not base64-decoded). While a
secret is rolled Stripe sends one ``v1`` per active secret; any match is enough; ``v0`` (test
mode's legacy scheme) is ignored. Like stripe-python, a timestamp older than the tolerance
is refused and one from the future is not: the sender's clock is Stripe's, and only a holder
of the secret can sign one.
"""

from __future__ import annotations

import secrets as secrets_mod
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _timestamped

HEADER = "stripe-signature"
# Keys users paste by mistake instead of the endpoint's signing secret.
_NOT_SIGNING_SECRETS = ("sk_", "rk_", "pk_")


class StripeSource(_base.Source):
    kind = "stripe"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = (
        "a Stripe API key, not a webhook signing secret; copy the endpoint's signing secret"
        " (whsec_...) from the dashboard or `stripe listen`"
    )

    def __init__(
        self,
        *,
        secret_env: str | None,
        payload: str = "event",
        tolerance: int = _base.DEFAULT_TOLERANCE,
        verify: bool = True,
        max_body_bytes: int | None = None,
    ) -> None:
        super().__init__(
            secret_env=secret_env,
            verify=verify,
            max_body_bytes=max_body_bytes,
            payload=None if payload == "event" else payload,
            tolerance=tolerance,
        )

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        if (problem := super().check_secrets(secrets)) is not None:
            return problem
        for i, secret in enumerate(secrets, 1):
            if not secret.startswith("whsec_"):
                return (
                    f"secret #{i} is not a Stripe webhook signing secret (they begin with whsec_)"
                )
        return None

    def example_secret(self) -> str:
        return "whsec_" + secrets_mod.token_hex(16)

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        header = _timestamped.parse(
            _base.one_header(headers, HEADER), separator=",", timestamp_key="t", signature_key="v1"
        )
        t = header.timestamp
        signed = f"{t}.".encode() + body  # stripe-python signs the timestamp as an integer
        expected = [_base.hmac_sha256(s.encode("utf-8"), signed) for s in self.secrets]
        if not _base.any_match(expected, header.signatures):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(t, now, self.tolerance, future=False)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.field(document, "type"), "field 'type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.field(document, "id"))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        t = int(now)
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), f"{t}.".encode() + body)
        return {HEADER: f"t={t},v1={mac.hex()}"}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        event = {
            "id": _base.new_id("evt_"),
            "object": "event",
            "api_version": None,
            "created": int(now),
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": data},
        }
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) solo-os-send",
        }
        return _base.json_body(event), headers


def stripe(
    *,
    secret_env: str | None = "STRIPE_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    payload: str = "event",
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
) -> StripeSource:
    """Stripe events, verified with the endpoint's signing secret(s) in ``secret_env``.

    The type is the event's ``type`` (``invoice.paid``), the idempotency key its ``id``
    (``evt_...``). The schema validates the whole event envelope (``payload="event"``), or the
    object it is about with ``payload="data.object"`` (any dotted path works). Deliveries
    signed more than ``tolerance`` seconds ago are refused (replays).
    """
    return StripeSource(
        secret_env=secret_env,
        payload=payload,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
    )
