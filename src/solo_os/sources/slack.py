"""``sources.slack``: Slack's Events API, ``X-Slack-Signature: v0=<hex>``.

``v0 = hex(HMAC-SHA256(signing secret, "v0:{X-Slack-Request-Timestamp}:{raw body}"))``; a
timestamp more than the tolerance (300 s) away from now, either way, is refused. Slack
retries an event it got no 2xx for with ``X-Slack-Retry-Num``/``-Reason`` and the same
``event_id``, which is the idempotency key, so a retry is a duplicate. The
``url_verification`` handshake is answered with its ``challenge``, and only after its
signature checked out (the ingress verifies before anything else).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base, _decode

HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
# Tokens users paste by mistake instead of the app's signing secret.
_NOT_SIGNING_SECRETS = ("xoxb-", "xoxp-", "xoxa-", "xoxe", "xapp-")


class SlackSource(_base.Source):
    kind = "slack"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = (
        "a Slack token, not the app's signing secret (Basic Information > App"
        " Credentials > Signing Secret)"
    )

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        raw_timestamp = _base.one_header(headers, TIMESTAMP_HEADER)
        timestamp = _base.parse_timestamp(raw_timestamp)
        value = _base.one_header(headers, HEADER)
        version, sep, digest = value.partition("=")
        if not sep or version != "v0":
            raise errors.SignatureError("malformed_signature")
        given = _base.hex_digest(digest)
        if given is None:
            raise errors.SignatureError("malformed_signature")
        # Signed as sent: the timestamp's text, not a number re-formatted (python-slack-sdk).
        base = b"v0:" + raw_timestamp.encode("ascii") + b":" + body
        expected = [_base.hmac_sha256(s.encode("utf-8"), base) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")
        _base.check_age(timestamp, now, self.tolerance, future=True)

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        inner = _base.field(document, "event.type")
        if inner is not None:
            return _base.type_text(inner, "field 'event.type'")
        command = _base.field(document, "command")  # a slash command's form: "/deploy"
        if command is not None and _base.field(document, "type") is None:
            return _base.type_text(command, "field 'command'")
        return _base.type_text(_base.field(document, "type"), "field 'type'")

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        # Events API: event_id (kept by retries); slash commands and interactivity: trigger_id.
        return _base.key_text(
            _base.field(document, "event_id") or _base.field(document, "trigger_id")
        )

    def challenge(self, headers: _base.Headers, document: Any) -> dict[str, Any] | None:
        if _base.field(document, "type") != "url_verification":
            return None
        token = _base.field(document, "challenge")
        return {"challenge": token} if isinstance(token, str) else None

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        timestamp = str(int(now))
        base = f"v0:{timestamp}:".encode() + body
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), base)
        return {TIMESTAMP_HEADER: timestamp, HEADER: "v0=" + mac.hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        headers = {"content-type": "application/json", "user-agent": "Slackbot 1.0 solo-os-send"}
        if event_type.startswith("/") or event_type in INTERACTIONS:
            headers["content-type"] = _decode.FORM_TYPE
            return _form_delivery(event_type, data), headers
        if event_type == "url_verification":
            document: dict[str, Any] = {
                "type": "url_verification",
                "token": "solo-os-send",
                "challenge": _base.new_id(),
            }
            if isinstance(data, dict):
                document.update(data)
            return _base.json_body(document), headers
        event = _base.with_field(data, "type", event_type)
        event.setdefault("event_ts", f"{now:.6f}")
        document = {
            "token": "solo-os-send",
            "team_id": "T00000000",
            "api_app_id": "A00000000",
            "event": event,
            "type": "event_callback",
            "event_id": "Ev" + _base.new_id()[:24].upper(),
            "event_time": int(now),
        }
        return _base.json_body(document), headers


INTERACTIONS = frozenset(
    {"block_actions", "block_suggestion", "interactive_message", "message_action",
     "shortcut", "view_closed", "view_submission"}
)


def _form_delivery(event_type: str, data: Any) -> bytes:
    """A slash command (``/deploy``: ``data``'s fields ride along) or an interactivity
    payload (``block_actions``: ``data`` in the ``payload`` field's JSON), form-encoded."""
    trigger = f"{_base.new_id()[:12]}.{_base.new_id()[:12]}.{_base.new_id()}"
    if event_type.startswith("/"):
        fields = {"token": "solo-os-send", "team_id": "T00000000", "command": event_type,
                  "text": "", "user_id": "U00000000", "trigger_id": trigger,
                  "response_url": "https://hooks.slack.com/commands/T00000000/0/solo-os-send"}
        if isinstance(data, dict):
            fields.update({k: v if isinstance(v, str) else _base.json_body(v).decode()
                           for k, v in data.items()})
        return urllib.parse.urlencode(fields).encode("ascii")
    document = {"type": event_type, "token": "solo-os-send", "trigger_id": trigger,
                "team": {"id": "T00000000"}, "user": {"id": "U00000000"}}
    if isinstance(data, dict):
        document.update(data)
    document["type"] = event_type
    return urllib.parse.urlencode({"payload": _base.json_body(document).decode()}).encode("ascii")


def slack(
    *,
    secret_env: str | None = "SLACK_SIGNING_SECRET",  # noqa: S107 - a variable name
    tolerance: int = _base.DEFAULT_TOLERANCE,
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> SlackSource:
    """Slack Events API requests, verified with the app's signing secret(s) in ``secret_env``.

    The type is ``event.type`` (``app_mention``), else the top-level ``type``; the key is
    ``event_id``, else the digest of the body. ``payload="event"`` hands the schema the inner
    event rather than the whole envelope.
    """
    return SlackSource(
        secret_env=secret_env,
        tolerance=tolerance,
        verify=verify,
        max_body_bytes=max_body_bytes,
        payload=payload,
    )
