"""Standard Webhooks (Svix) under a provider's own name: Resend, Clerk.

The scheme is ``sources.standard_webhooks``'s (``whsec_`` secrets, ``v1,`` signatures over
``{id}.{timestamp}.{body}``, 300 s tolerance); these providers send Svix's ``svix-id``,
``svix-timestamp`` and ``svix-signature`` headers (the ``webhook-*`` names are accepted too),
and test deliveries are built the way they send them.
"""

from __future__ import annotations

from collections.abc import Mapping

from solo_os.sources import _base, standard_webhooks


class SvixPreset(standard_webhooks.StandardWebhooksSource):
    """A Standard Webhooks source that signs as Svix does (``svix-*`` headers)."""

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        msg_id = (headers or {}).get("svix-id") or _base.new_id("msg_")
        signed = super().sign(body, now, {"webhook-id": msg_id})
        return {"svix-" + k.removeprefix("webhook-"): v for k, v in signed.items()}
