"""What every provider source shares: secrets, header access, and the delivery's anatomy.

A source answers four questions about a raw delivery: is it authentic (``verify``), what type
of event is it (``event_type``), what makes it unique (``idempotency_key``), and which part of
the JSON document the handler's schema sees (``payload``). Verification always runs over the
raw bytes and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from solo_os import errors
from solo_os import secret_sources as secrets_mod
from solo_os.sources import _decode
from solo_os.sources._headers import DictHeaders as DictHeaders
from solo_os.sources._headers import Headers as Headers

#: Header names containing any of these are taken for credentials and not stored (see
#: ``Source.stored_headers``).
CREDENTIAL_LIKE = (
    "auth", "token", "secret", "key", "password", "passwd", "signature", "hmac", "cookie",
    "session", "credential",
)
MAX_HEADER_CHARS = 8192  # a signature header longer than this is an attack, not a signature
DEFAULT_TOLERANCE = 300  # seconds a signed timestamp may be off (Stripe, Slack, Standard Webhooks)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_HEX = re.compile(r"[0-9a-fA-F]*")
# Unix seconds: ASCII digits only (``\d`` would admit other scripts' digits) and few enough of
# them that no conversion can overflow; 15 digits is ~30 million years.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# What a database column or a log line should never hold: C0 controls, DEL, lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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


def header_value(headers: Headers, name: str) -> str | None:
    """The single value of a header that types or keys a delivery (not a signature).

    Missing, repeated or oversized: None, so the delivery is rejected or keyed by its body;
    never an exception, because this runs after verification succeeded.
    """
    values = headers.getlist(name)
    if len(values) != 1 or not values[0] or len(values[0]) > MAX_HEADER_CHARS:
        return None
    return values[0]


def wire_bytes(text: str) -> bytes:
    """A header value's bytes as sent: ASGI servers decode headers as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (tests, DictHeaders): any total encoding
        return text.encode("utf-8", "surrogatepass")


def parse_timestamp(value: str) -> int:
    """Unix seconds from a signature header; anything but plain digits fails verification."""
    if not _TIMESTAMP.fullmatch(value):
        raise errors.SignatureError("malformed_timestamp")
    return int(value)


def check_age(timestamp: int, now: float, tolerance: int, *, future: bool) -> None:
    """Reject a signed timestamp older than ``tolerance`` (and, if ``future``, as far ahead)."""
    if now - timestamp > tolerance:
        raise errors.SignatureError("timestamp_too_old")
    if future and timestamp - now > tolerance:
        raise errors.SignatureError("timestamp_too_new")


def hex_digest(value: str) -> bytes | None:
    """A SHA-256 digest written as 64 hex digits, or None (no whitespace, no other length)."""
    return bytes.fromhex(value) if _HEX_DIGEST.fullmatch(value) else None


def base64_digest(value: str) -> bytes | None:
    """A SHA-256 digest in standard, canonical base64, or None where it is not exactly that.

    Canonical: the last character's unused low bits must be zero. Base64 decoders ignore them,
    so without this check a signature with one character changed (``...1=`` for ``...0=``)
    would still verify; the providers' own libraries compare the encoded text and refuse it.
    """
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != value:
        return None
    return raw


def key_text(value: Any) -> str | None:
    """An idempotency key taken from a document: a non-empty string or an integer, else None.

    A key with characters no database column should hold (NUL, controls, lone surrogates) is
    replaced by its digest: still deterministic, so redeliveries still collide.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text:
        return None
    if _UNPRINTABLE.search(text):
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def type_text(value: Any, where: str) -> str | None:
    """An event type: a non-empty printable string, None when absent or not a string."""
    if not isinstance(value, str) or not value:
        return None
    if _UNPRINTABLE.search(value):
        raise errors.PayloadError(
            [{"loc": ["type"], "msg": f"the event type in {where} holds control characters",
              "type": "value_error"}]
        )
    return value


def positive_seconds(value: Any, what: str) -> int:
    """A configured tolerance: a positive whole number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.ConfigError(
            f"{what} must be a positive whole number of seconds, not {value!r}"
        )
    return value


def valid_path(path: str) -> bool:
    """Whether ``path`` is a field name or a dotted path (``data.object``)."""
    return bool(_PATH.fullmatch(path))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def with_field(document: Any, path: str, value: Any) -> dict[str, Any]:
    """A copy of the JSON object ``document`` with ``path`` (dotted) set to ``value``."""
    if not isinstance(document, dict):
        raise errors.ConfigError(f"the data must be a JSON object to carry {path!r}")
    head, _, rest = path.partition(".")
    copy = dict(document)
    copy[head] = with_field(copy.get(head) or {}, rest, value) if rest else value
    return copy


def new_id(prefix: str = "") -> str:
    """A fresh, unguessable delivery id for ``solo-os send`` (``evt_...``, ``msg_...``)."""
    return prefix + uuid.uuid4().hex


def json_body(document: Any) -> bytes:
    """The compact JSON a provider would send."""
    try:
        return orjson.dumps(document)
    except TypeError as exc:  # orjson's JSONEncodeError: e.g. an integer beyond 64 bits
        raise errors.ConfigError(f"the data cannot be sent as JSON: {exc}") from None


def credential_like(name: str) -> bool:
    """Whether a header name looks like it carries a credential (``CREDENTIAL_LIKE``)."""
    lowered = name.lower()
    return any(part in lowered for part in CREDENTIAL_LIKE)


def digest_key(body: bytes) -> str:
    """The idempotency key of a delivery that carries none: an identical body is a duplicate."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.digest(secret, message, "sha256")  # OpenSSL's one-shot HMAC: no object


def hmac_sha1(secret: bytes, message: bytes) -> bytes:
    """HMAC-SHA1: still what Twilio and Intercom sign with (HMAC-SHA1 is not broken)."""
    return hmac.new(secret, message, hashlib.sha1).digest()


def hex_bytes(value: str, size: int) -> bytes | None:
    """``size`` bytes written as exactly ``2 * size`` hex digits, or None."""
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def base64_bytes(value: str, size: int) -> bytes | None:
    """``size`` bytes in standard, canonical base64 (see ``base64_digest``), or None."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != size or base64.b64encode(raw).decode("ascii") != value:
        return None
    return raw


def token_match(given: str, secrets: Sequence[str]) -> bool:
    """Whether ``given`` equals one of ``secrets`` (shared tokens, credentials), in constant time.

    Digests are compared, so neither the secrets' lengths nor a common prefix shows in timing.
    """
    digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    return any_match([hashlib.sha256(s.encode("utf-8")).digest() for s in secrets], [digest])


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
    """Base of every provider source.

    Subclasses set ``kind`` and ``secret_headers`` and implement ``verify``, ``event_type``,
    ``idempotency_key``, ``sign`` and ``compose``; they may override ``check_secrets`` (the
    secrets' form) and ``challenge``. ``verify`` raises ``SignatureError`` and nothing else;
    ``event_type`` and ``idempotency_key`` run on a verified document and raise nothing but
    ``PayloadError``.
    """

    kind: ClassVar[str] = "source"
    #: Mounted at ``POST /webhooks/{name}``; False for queue-fed sources (``sources/queue.py``).
    http: ClassVar[bool] = True
    #: Headers that carry signatures or credentials: never stored, logged or exported.
    secret_headers: frozenset[str] = frozenset()
    #: Credentials no source keeps, whatever its scheme and ``App(store_headers=...)``.
    _always_dropped: ClassVar[frozenset[str]] = frozenset(
        {"authorization", "cookie", "proxy-authorization", "set-cookie"}
    )
    #: Headers whose name looks like a credential (``CREDENTIAL_LIKE``) but that sources read
    #: and document: idempotency keys. Kept with the event.
    kept_headers: ClassVar[frozenset[str]] = frozenset(
        {"idempotency-key", "x-idempotency-key", "i-twilio-idempotency-token", "x-event-key"}
    )
    #: Seconds a signed timestamp may be off, for schemes that sign one (``tolerance=``).
    default_tolerance: ClassVar[int] = DEFAULT_TOLERANCE
    #: Prefixes of other credentials (API keys, tokens) users paste instead of the webhook
    #: secret, and what they are: ``check_secrets`` says "secret #2 is {mistaken_for}".
    mistaken_prefixes: ClassVar[tuple[str, ...]] = ()
    mistaken_for: ClassVar[str] = ""
    #: ``stored_headers``' verdict per header name, with the ``keep`` it was worked out for.
    _verdicts: tuple[Iterable[str], dict[str, bool]] | None = None

    def __init__(
        self,
        *,
        secret_env: str | None,
        verify: bool = True,
        max_body_bytes: int | None = None,
        payload: str | None = None,
        tolerance: int | None = None,
    ) -> None:
        if secret_env is not None and not _NAME.fullmatch(secret_env):
            raise errors.ConfigError(
                f"secret_env {secret_env!r} is not an environment variable name"
            )
        if max_body_bytes is not None and (
            isinstance(max_body_bytes, bool)
            or not isinstance(max_body_bytes, int)
            or max_body_bytes < 1
        ):
            raise errors.ConfigError("max_body_bytes must be a positive number of bytes")
        if payload is not None and not valid_path(payload):
            raise errors.ConfigError(
                f"payload={payload!r}: give a dotted path into the JSON document,"
                " like 'data.object'"
            )
        self.secret_env = secret_env
        self.verify_signatures = verify
        self.max_body_bytes = max_body_bytes
        self.payload_path = payload
        tolerance = self.default_tolerance if tolerance is None else tolerance
        self.tolerance = positive_seconds(tolerance, f"sources.{self.kind}: tolerance")
        self.name = ""
        self._secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never shows a secret
        return f"<{type(self).__name__} {self.name or '?'} secret_env={self.secret_env!r}>"

    # --- configuration -------------------------------------------------------------------

    def bind(self, name: str, env: Mapping[str, str]) -> list[str]:
        """Resolve the secrets for source ``name``; return the problems (fail closed).

        A problem names the variable, never a secret's value.
        """
        self.name = name
        self._secrets = ()
        self._resolver: secrets_mod.Refreshing | None = None
        if not self.verify_signatures:
            return []
        if not self.secret_env:
            return [
                f"source {name!r}: no secret_env given"
                " (pass verify=False only for local experiments)"
            ]
        if not parse_secrets(env.get(self.secret_env, "")) and not env.get(
            f"{self.secret_env}_FILE", ""
        ).strip():
            return [
                f"{self.secret_env}: not set; source {name!r} refuses to start without its secret"
            ]
        try:  # a value, {secret_env}_FILE, or references (file:, aws-sm:, doppler:, op://)
            self._resolver = secrets_mod.Refreshing(self.secret_env, env, check=self.check_secrets)
        except errors.ConfigError as exc:
            return exc.problems
        self._secrets = self._resolver.current()
        return []

    def check_secrets(self, secrets: tuple[str, ...]) -> str | None:
        """A problem with the secrets' form, or None: one of ``mistaken_prefixes``. Schemes
        with a format of their own extend it."""
        for i, secret in enumerate(secrets, 1):
            if self.mistaken_prefixes and secret.startswith(self.mistaken_prefixes):
                return f"secret #{i} is {self.mistaken_for}"
        return None

    def example_secret(self) -> str:
        """A fresh secret in the form this source accepts (tests, ``solo-os sources``).

        Sources that verify with a public key return a test private key they can sign with.
        """
        return "solo-test-" + uuid.uuid4().hex

    def variables(self) -> dict[str, str]:
        """The environment variables this source reads and what each holds (never a value)."""
        return {self.secret_env: "secret"} if self.secret_env else {}

    @property
    def secrets(self) -> tuple[str, ...]:
        resolver = getattr(self, "_resolver", None)  # set by bind(); re-resolves after a TTL
        if resolver is not None:
            self._secrets = resolver.current()
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

    def decode(self, headers: Headers, body: bytes) -> Any:
        """The verified body as a document: JSON, or a decoded form (``decode_body``)."""
        return _decode.decode_body(headers, body)

    def payload(self, document: Any) -> Any:
        """The part of the JSON document handed to the handler's schema (``payload=`` path)."""
        return document if self.payload_path is None else field(document, self.payload_path)

    def challenge(self, headers: Headers, document: Any) -> dict[str, Any] | None:
        """An immediate reply that is not an event (e.g. Slack's url_verification), or None."""
        return None

    def acknowledgement(self, event_type: str) -> dict[str, Any] | None:
        """The body of the 200 for a stored (accepted or duplicate) event of ``event_type``,
        where the provider's protocol needs one (Discord's interaction responses); None for
        solo-os's own ``{"status": ...}``."""
        return None

    def stored_headers(self, headers: Any, keep: Iterable[str] = ()) -> dict[str, str]:
        """The headers kept with the event (shown by the admin API, given to handlers).

        Dropped before storage: this source's signature headers and ``authorization``,
        ``proxy-authorization``, ``cookie``, ``set-cookie``, always; and every header whose
        name contains one of ``CREDENTIAL_LIKE`` (``token``, ``secret``, ``key``, ``auth``,
        ``password``, ``signature``, ...), unless the source reads it (``kept_headers``) or
        the app keeps it (``keep``, from ``App(store_headers=[...])``). A value with a NUL
        byte is dropped too: no database text column can hold it.
        """
        cache = self._verdicts  # each name's verdict, worked out once per ``keep``
        if cache is None or cache[0] is not keep:
            cache = self._verdicts = (keep, {})
        verdicts = cache[1]
        out = {}
        for k, v in headers.items():
            if (stored := verdicts.get(k)) is None:
                stored = self._stored(k.lower(), keep)
                if len(verdicts) < 1024:  # names come from requests: bounded
                    verdicts[k] = stored
            if stored and "\x00" not in v:
                out[k] = v
        return out

    def _stored(self, name: str, keep: Iterable[str]) -> bool:
        if name in self.secret_headers or name in self._always_dropped:
            return False
        kept = name in self.kept_headers or name in {k.lower() for k in keep}
        return kept or not credential_like(name)

    # --- building deliveries (``solo-os send``, tests) ---------------------------------

    def sign(
        self, body: bytes, now: float, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Headers that make ``body`` a correctly signed delivery, with the first secret.

        ``headers`` are the delivery's other headers, for schemes that sign one of them (the
        Standard Webhooks message id).
        """
        raise NotImplementedError

    def compose(self, event_type: str, data: Any, now: float) -> tuple[bytes, dict[str, str]]:
        """The body and unsigned headers of a ``event_type`` delivery carrying ``data``."""
        raise NotImplementedError

    def build_delivery(
        self, event_type: str, data: Any, now: float
    ) -> tuple[bytes, dict[str, str]]:
        """A delivery as the provider would send it, signed with the first configured secret.

        This source's ``verify`` accepts it, ``event_type`` reads ``event_type`` back from it,
        and ``payload`` hands ``data`` to the schema (Stripe under ``payload="data.object"``).
        """
        body, headers = self.compose(event_type, data, now)
        if self.verify_signatures:
            headers.update(self.sign(body, now, headers))
        return body, headers

    def signing_secret(self) -> str:
        """The secret new signatures are made with: the first of the list."""
        current = self.secrets
        if not current:
            raise errors.ConfigError(
                f"source {self.name or '?'!r} has no secret to sign with; set {self.secret_env}"
            )
        return current[0]


def field(document: Any, path: str) -> Any:
    """``a.b.c`` looked up in nested dicts; None where any part is missing."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
