"""``sources.gitlab``: GitLab, a shared token in ``X-Gitlab-Token``.

GitLab does not sign the body: it sends the webhook's secret token as it is. It is compared in
constant time with every configured token (rotation: ``new,old``). The type is the
``X-Gitlab-Event`` header (``Push Hook``, ``Merge Request Hook``); the key is
``Idempotency-Key`` (GitLab 17.4+, kept across retries), else ``X-Gitlab-Event-UUID``.
Reference: https://docs.gitlab.com/user/project/integrations/webhooks/
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from solo_os import errors
from solo_os.sources import _base

HEADER = "x-gitlab-token"
EVENT_HEADER = "x-gitlab-event"
UUID_HEADER = "x-gitlab-event-uuid"
IDEMPOTENCY_HEADER = "idempotency-key"
MIN_TOKEN_CHARS = 8
# Tokens users paste by mistake instead of the webhook's secret token.
_NOT_SIGNING_SECRETS = ("glpat-", "gloas-", "glptt-", "gldt-", "glrt-")


class GitLabSource(_base.Source):
    kind = "gitlab"
    secret_headers = frozenset({HEADER})
    mistaken_prefixes = _NOT_SIGNING_SECRETS
    mistaken_for = "a GitLab access token, not the webhook's secret token"

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        if (problem := super().check_secrets(secrets)) is not None:
            return problem
        for i, secret in enumerate(secrets, 1):
            if len(secret) < MIN_TOKEN_CHARS:
                return (
                    f"secret #{i} has {len(secret)} characters; a webhook token needs at"
                    f" least {MIN_TOKEN_CHARS} (it is the only thing GitLab proves itself with)"
                )
        return None

    def verify(self, headers: _base.Headers, body: bytes, now: float) -> None:
        if not _base.token_match(_base.one_header(headers, HEADER), self.secrets):
            raise errors.SignatureError("token_mismatch")

    def event_type(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.type_text(_base.header_value(headers, EVENT_HEADER), EVENT_HEADER)

    def idempotency_key(self, headers: _base.Headers, document: Any) -> str | None:
        return _base.key_text(
            _base.header_value(headers, IDEMPOTENCY_HEADER)
            or _base.header_value(headers, UUID_HEADER)
        )

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return {HEADER: self.signing_secret()}

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        event_uuid = str(uuid.uuid4())
        headers = {
            "content-type": "application/json",
            "user-agent": "GitLab/solo-os-send",
            EVENT_HEADER: event_type,
            UUID_HEADER: event_uuid,
            IDEMPOTENCY_HEADER: event_uuid,
            "x-gitlab-webhook-uuid": str(uuid.uuid4()),
            "x-gitlab-instance": "https://gitlab.example",
        }
        return _base.json_body(data), headers


def gitlab(
    *,
    secret_env: str | None = "GITLAB_WEBHOOK_TOKEN",  # noqa: S107 - a variable name
    verify: bool = True,
    max_body_bytes: int | None = None,
    payload: str | None = None,
) -> GitLabSource:
    """GitLab webhooks, authenticated by the secret token(s) in ``secret_env``.

    The type is ``X-Gitlab-Event`` (``Merge Request Hook``), the key ``Idempotency-Key`` else
    ``X-Gitlab-Event-UUID``. ``payload`` is a dotted path to the part the schema validates.
    """
    return GitLabSource(
        secret_env=secret_env, verify=verify, max_body_bytes=max_body_bytes, payload=payload
    )
