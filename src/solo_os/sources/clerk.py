"""``sources.clerk``: Clerk's webhooks, Standard Webhooks signed through Svix.

Headers ``svix-id``/``-timestamp``/``-signature`` (or ``webhook-*``), secret ``whsec_...``
(the endpoint's Signing Secret). The type is ``type`` (``user.created``,
``session.ended``), the key the message id (``svix-id``). Reference:
https://clerk.com/docs/webhooks/sync-data (verifying webhooks)
"""

from __future__ import annotations

from typing import Any

from solo_os.sources import _base, _svix_preset

# Keys users paste by mistake instead of the endpoint's signing secret.
_NOT_SIGNING_SECRETS = ("sk_live_", "sk_test_", "pk_live_", "pk_test_")


class ClerkSource(_svix_preset.SvixPreset):
    kind = "clerk"
    secret_headers = frozenset({"webhook-signature", "svix-signature"})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = "a Clerk API key, not the webhook endpoint's signing secret (whsec_...)"

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        document = {
            "data": data,
            "instance_id": "ins_solo_os_send",
            "object": "event",
            "timestamp": int(now * 1000),
            "type": event_type,
        }
        headers = {
            "content-type": "application/json",
            "user-agent": "Svix-Webhooks/1.0 solo-os-send",
            "svix-id": _base.new_id("msg_"),
        }
        return _base.json_body(document), headers


def clerk(
    *,
    secret_env: str | None = "CLERK_WEBHOOK_SIGNING_SECRET",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> ClerkSource:
    """Clerk webhooks, verified with the ``whsec_...`` signing secret(s) in ``secret_env``.

    The type is ``type`` (``user.created``), the key ``svix-id``. ``payload="data"`` hands the
    schema the user, session or organization object.
    """
    return ClerkSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
