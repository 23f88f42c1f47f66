"""``sources.github``: ``X-Hub-Signature-256: sha256=<hex(HMAC-SHA256(secret, raw body))>``.

GitHub signs no timestamp and does not retry by itself; a redelivery (manual or through the
API) keeps its ``X-GitHub-Delivery``, which is therefore the idempotency key. The type is the
``X-GitHub-Event`` header joined with the body's ``action`` where there is one
(``issues.opened``, ``pull_request.closed``, ``push``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "x-hub-signature-256"
LEGACY_HEADER = "x-hub-signature"  # SHA-1, still sent; never trusted, never stored
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"


class GitHubSource(_base.Source):
    kind = "github"
    secret_headers = frozenset({HEADER, LEGACY_HEADER})

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        value = _base.one_header(headers, HEADER)
        scheme, sep, digest = value.partition("=")
        if not sep or scheme != "sha256":
            raise errors.SignatureError("malformed_signature")
        given = _base.hex_digest(digest)
        if given is None:
            raise errors.SignatureError("malformed_signature")
        expected = [_base.hmac_sha256(s.encode("utf-8"), body) for s in self.secrets]
        if not _base.any_match(expected, [given]):
            raise errors.SignatureError("signature_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        event = _base.type_text(_base.header_value(headers, EVENT_HEADER), EVENT_HEADER)
        if event is None:
            return None
        action = _base.type_text(_base.field(document, "action"), "field 'action'")
        return f"{event}.{action}" if action else event

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(_base.header_value(headers, DELIVERY_HEADER))

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        mac = _base.hmac_sha256(self.signing_secret().encode("utf-8"), body)
        return {HEADER: "sha256=" + mac.hex()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        event, _, action = event_type.partition(".")
        document = _base.with_field(data, "action", action) if action else data
        headers = {
            "content-type": "application/json",
            "user-agent": "GitHub-Hookshot/solo-os-send",
            EVENT_HEADER: event,
            DELIVERY_HEADER: str(uuid.uuid4()),
            "x-github-hook-id": "0",
        }
        return _base.json_body(document), headers


def github(
    *,
    secret_env: str | None = "GITHUB_WEBHOOK_SECRET",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> GitHubSource:
    """GitHub webhooks (repository, organization or App), verified with ``secret_env``.

    Set the webhook's content type to ``application/json``. The type is ``X-GitHub-Event``
    plus ``.action`` (``issues.opened``), the key ``X-GitHub-Delivery``. ``payload`` is a
    dotted path to the part the schema validates (default: the whole body).
    """
    return GitHubSource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
