"""``sources.resend``: Resend's webhooks, Standard Webhooks signed through Svix.

Headers ``svix-id``/``-timestamp``/``-signature`` (or ``webhook-*``), secret ``whsec_...`` from
the webhook's page. The type is ``type`` (``email.delivered``, ``email.bounced``), the key the
message id (``svix-id``), kept by Resend's retries. Reference:
https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from solo_os.sources import _base, _svix_preset


class ResendSource(_svix_preset.SvixPreset):
    kind = "resend"
    secret_headers = frozenset({"webhook-signature", "svix-signature"})

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "type": event_type,
            "created_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        headers = {
            "content-type": "application/json",
            "user-agent": "Svix-Webhooks/1.0 solo-os-send",
            "svix-id": _base.new_id("msg_"),
        }
        return _base.json_body(document), headers


def resend(
    *,
    secret_env: str | None = "RESEND_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> ResendSource:
    """Resend webhooks, verified with the ``whsec_...`` secret(s) in ``secret_env``.

    The type is ``type`` (``email.delivered``), the key ``svix-id``. ``payload="data"`` hands
    the schema the email object.
    """
    return ResendSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
