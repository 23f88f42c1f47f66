"""What every provider source shares: secrets, header access, and the delivery's anatomy.

A source answers four questions about a raw delivery: is it authentic (``verify``), what type
of event is it (``event_type``), what makes it unique (``idempotency_key``), and which part of
the JSON document the handler's schema sees (``payload``). Verification always runs over the
raw bytes and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from solo_os import errors

MAX_HEADER_CHARS = 8192  # a signature header longer than this is an attack, not a signature
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Headers(Protocol):
    """The part of a case-insensitive, multi-valued header mapping a source needs."""

    def getlist(self, key: str) -> list[str]: ...


class DictHeaders:
    """``Headers`` over a plain mapping (tests, the CLI's ``send``, replays)."""

    def __init__(self, items: Mapping[str, str] | Sequence[tuple[str, str]]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = [(k.lower(), v) for k, v in pairs]

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.getlist(key)
        return values[0] if values else default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


def one_header(headers: Headers, name: str) -> str:
    """The single value of ``name``; a missing, repeated or oversized header fails verification."""
    value = optional_header(headers, name)
    if value is None:
        raise errors.SignatureError(f"missing_header:{name.lower()}")
    return value


def optional_header(headers: Headers, name: str) -> str | None:
    """The single value of ``name`` or None; a repeated or oversized header fails verification."""
    values = headers.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise errors.SignatureError(f"repeated_header:{name.lower()}")
    value = values[0]
    if len(value) > MAX_HEADER_CHARS:
        raise errors.SignatureError(f"oversized_header:{name.lower()}")
    return value


def digest_key(body: bytes) -> str:
    """The idempotency key of a delivery that carries none: an identical body is a duplicate."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def any_match(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    """True if any given signature equals any expected one, each compared in constant time.

    Every pair is compared (no early exit), so timing reveals neither which secret nor which
    signature matched.
    """
    found = False
    for e in expected:
        for g in given:
            found |= hmac.compare_digest(e, g)
    return found


def parse_secrets(raw: str) -> tuple[str, ...]:
    """Comma-separated secrets (rotation: old and new side by side), blanks dropped."""
    return tuple(s.strip() for s in raw.split(",") if s.strip())


class Source:
    """Base of every provider source. Subclasses set ``kind`` and implement ``verify``."""

    kind: ClassVar[str] = "source"
    #: Headers that carry signatures or credentials: never stored, logged or exported.
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    #: Headers worth keeping with the event (besides all non-secret ``x-``/provider headers).
    _always_dropped: ClassVar[frozenset[str]] = frozenset(
        {"authorization", "cookie", "proxy-authorization", "x-api-key"}
    )

    def __init__(
        self,
        *,
        secret_env: str | None,
        verify: bool = True,
        max_body_bytes: int | None = None,
    ) -> None:
        if secret_env is not None and not _NAME.match(secret_env):
            raise errors.ConfigError(f"secret_env {secret_env!r} is not an environment variable name")
        if max_body_bytes is not None and max_body_bytes < 1:
            raise errors.ConfigError("max_body_bytes must be a positive number of bytes")
        self.secret_env = secret_env
        self.verify_signatures = verify
        self.max_body_bytes = max_body_bytes
        self.name = ""
        self._secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never shows a secret
        return f"<{type(self).__name__} {self.name or '?'} secret_env={self.secret_env!r}>"

    # --- configuration -------------------------------------------------------------------

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        """Resolve the secrets for source ``name``; return the problems (fail closed)."""
        self.name = name
        if not self.verify_signatures:
            return []
        if not self.secret_env:
            return [f"source {name!r}: no secret_env given (pass verify=False only for local experiments)"]
        secrets = parse_secrets(env.get(self.secret_env, ""))
        if not secrets:
            return [f"{self.secret_env}: not set; source {name!r} refuses to start without its secret"]
        problem = self.check_secrets(secrets)
        if problem:
            return [f"{self.secret_env}: {problem}"]
        self._secrets = secrets
        return []

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        """A problem with the secrets' form, or None. Overridden by schemes with a format."""
        return None

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    # --- per delivery --------------------------------------------------------------------

    def authenticate(self, headers: Headers, body: bytes, now: float) -> None:
        """Raise ``SignatureError`` unless the delivery is authentic (or verification is off)."""
        if self.verify_signatures:
            if not self._secrets:
                raise errors.SignatureError("no_secret")
            self.verify(headers, body, now)

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        raise NotImplementedError

    def event_type(self, headers: Headers, document: Any) -> str | None:
        raise NotImplementedError

    def idempotency_key(self, headers: Headers, document: Any) -> str | None:
        raise NotImplementedError

    def payload(self, document: Any) -> Any:
        """The part of the JSON document handed to the handler's schema."""
        return document

    def challenge(self, headers: Headers, document: Any) -> dict[str, Any] | None:
        """An immediate reply that is not an event (e.g. Slack's url_verification), or None."""
        return None

    def stored_headers(self, headers: Any) -> dict[str, str]:
        """The headers kept with the event: all but signatures and credentials."""
        drop = self.secret_headers | self._always_dropped
        return {k: v for k, v in headers.items() if k.lower() not in drop}

    def sign(self, body: bytes, now: float) -> dict[str, str]:
        """Headers that make ``body`` a correctly signed delivery (``solo-os send``, tests)."""
        raise NotImplementedError


def field(document: Any, path: str) -> Any:
    """``a.b.c`` looked up in nested dicts; None where any part is missing."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
