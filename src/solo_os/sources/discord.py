"""``sources.discord``: Discord interactions and webhook events, signed with Ed25519.

``X-Signature-Ed25519`` is the hex signature of ``X-Signature-Timestamp`` + raw body under
Discord's private key; ``secret_env`` holds the application's *public key* (64 hex digits,
"Public Key" on the application's General Information page; several, comma-separated, while
moving between applications). A timestamp further than the tolerance from now is refused.

Discord checks the endpoint when it is saved: it sends a PING (an interaction of ``type`` 1,
or a webhook event of ``type`` 0) and a forged one too; the PING is answered with
``{"type": 1}`` only when its signature checks out (the forged one gets 401, as Discord
requires). A stored interaction is answered with a deferred interaction response
(``{"type": 5}`` for a command or modal, ``{"type": 6}`` for a component), which the handler
completes through the interaction's token. Types: a webhook event's ``event.type``
(``APPLICATION_AUTHORIZED``, ``ENTITLEMENT_CREATE``); an interaction's type by name (``APPLICATION_COMMAND``,
``MESSAGE_COMPONENT``, ...). Key: the interaction's ``id``; a webhook event has none (its
digest). References: https://discord.com/developers/docs/interactions/overview (security and
authorization), https://discord.com/developers/docs/events/webhook-events
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _keys

HEADER = "x-signature-ed25519"
TIMESTAMP_HEADER = "x-signature-timestamp"
INTERACTION_TYPES = {
    1: "PING",
    2: "APPLICATION_COMMAND",
    3: "MESSAGE_COMPONENT",
    4: "APPLICATION_COMMAND_AUTOCOMPLETE",
    5: "MODAL_SUBMIT",
}
_BY_NAME = {v: k for k, v in INTERACTION_TYPES.items()}
# The interaction response each stored interaction is answered with (its "type"):
# 5 DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking..."), 6 DEFERRED_UPDATE_MESSAGE (a component
# acknowledged, the message unchanged), 8 APPLICATION_COMMAND_AUTOCOMPLETE_RESULT (no choices).
ACKNOWLEDGEMENTS: dict[str, dict[str, Any]] = {
    "APPLICATION_COMMAND": {"type": 5},
    "MESSAGE_COMPONENT": {"type": 6},
    "MODAL_SUBMIT": {"type": 5},
    "APPLICATION_COMMAND_AUTOCOMPLETE": {"type": 8, "data": {"choices": []}},
}


def _is_webhook_event(document: Any) -> bool:
    return isinstance(document, dict) and "token" not in document and (
        document.get("type") == 0 or isinstance(document.get("event"), dict)
    )


class DiscordSource(_base.Source):
    kind = "discord"
    secret_headers = frozenset({HEADER})

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        for i, secret in enumerate(secrets, 1):
            try:
                _keys.ed25519_key(secret)
            except ValueError as exc:
                return (
                    f"secret #{i} is {exc}: give the application's Public Key from the Discord"
                    " developer portal"
                )
        return None

    def example_secret(self) -> str:
        return _keys.new_ed25519_test_key()

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raw_timestamp = _base.one_header(headers, TIMESTAMP_HEADER)
        timestamp = _base.parse_timestamp(raw_timestamp)
        signature = _base.hex_bytes(_base.one_header(headers, HEADER).strip(), 64)
        if signature is None:
            raise errors.SignatureError("malformed_signature")
        keys = [_keys.ed25519_key(s)[0] for s in self.secrets]  # checked by bind()
        if not _keys.ed25519_verify(keys, signature, raw_timestamp.encode("ascii") + body):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(timestamp, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        if _is_webhook_event(document):
            if document.get("type") == 0:
                return "PING"
            return _base.type_text(_base.field(document, "event.type"), "field 'event.type'")
        kind = _base.field(document, "type")
        if isinstance(kind, int) and not isinstance(kind, bool):
            return INTERACTION_TYPES.get(kind, f"INTERACTION_{kind}")
        return None

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        if _is_webhook_event(document):
            return None
        return _base.key_text(_base.field(document, "id"))

    def challenge(self, headers: _base.Headers, document: Any) -> dict[str, Any] | None:
        if not isinstance(document, dict):
            return None
        if document.get("type") == 0 and _is_webhook_event(document):
            return {}  # a webhook events PING: any 2xx
        if document.get("type") == 1 and not _is_webhook_event(document):
            return {"type": 1}  # PONG
        return None

    def acknowledgement(self, event_type: str) -> dict[str, Any] | None:
        # Discord wants an interaction response within 3 s: a deferred one, which the handler
        # completes through the interaction's token (edit @original or a follow-up message).
        return ACKNOWLEDGEMENTS.get(event_type)

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        private = _keys.ed25519_key(self.signing_secret())[1]
        if private is None:
            raise errors.ConfigError(
                f"{self.secret_env} holds Discord's public key; only Discord can sign with its"
                " private key. To send test deliveries, set it to a test key"
                " (private:<64 hex digits>, made by `solo-os sources --test-secret NAME`)"
            )
        timestamp = str(int(now))
        signature = private.sign(timestamp.encode("ascii") + body)
        return {TIMESTAMP_HEADER: timestamp, HEADER: signature.hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        headers = {
            "content-type": "application/json",
            "user-agent": "Discord-Interactions/1.0 (+https://discord.com) solo-os-send",
        }
        snowflake = str((int(now * 1000) - 1420070400000) << 22)
        document: dict[str, Any]
        if event_type in _BY_NAME:
            document = {
                "id": snowflake,
                "application_id": "0",
                "type": _BY_NAME[event_type],
                "token": _base.new_id(),
                "version": 1,
            }
            if event_type != "PING":
                document["data"] = data
        else:
            document = {
                "version": 1,
                "application_id": "0",
                "type": 1,
                "event": {
                    "type": event_type,
                    "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                    "data": data,
                },
            }
        return _base.json_body(document), headers


def discord(
    *,
    secret_env: str | None = "DISCORD_PUBLIC_KEY",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> DiscordSource:
    """Discord interactions and webhook events, verified with the application's public key.

    PINGs are answered (only when signed). The type is ``event.type`` for webhook events, the
    interaction type's name for interactions; the key is the interaction ``id``.
    """
    return DiscordSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
