"""Signature headers that carry a timestamp and signatures as ``key=value`` pairs.

Stripe (``t=..,v1=..``), Calendly (the same) and Paddle (``ts=..;h1=..``) send one timestamp and
one hex HMAC per active secret in a single header. Parsed once here, with the same rules for
all three: a repeated timestamp is refused, at most ``MAX_SIGNATURES`` signatures are read, and an
unreadable signature does not spoil a readable one that matches (as stripe-python does).
"""

from __future__ import annotations

from dataclasses import dataclass

from solo_os import errors
from solo_os.sources import _base

MAX_SIGNATURES = 32  # one per active secret; more than this is not the provider


@dataclass(frozen=True, slots=True)
class Signed:
    """What the header says: the timestamp as sent and as seconds, and the readable signatures."""

    timestamp_text: str
    timestamp: int
    signatures: tuple[bytes, ...]


def parse(value: str, *, separator: str, timestamp_key: str, signature_key: str) -> Signed:
    """Parse ``value``; ``SignatureError`` with the reason where it cannot be verified."""
    timestamp: str | None = None
    given: list[bytes] = []
    offered = 0
    for item in value.split(separator):
        key, sep, text = item.strip().partition("=")
        if not sep:
            continue
        if key == timestamp_key:
            if timestamp is not None:
                raise errors.SignatureError("repeated_timestamp")
            timestamp = text
        elif key == signature_key:
            offered += 1
            if offered > MAX_SIGNATURES:
                raise errors.SignatureError("too_many_signatures")
            if (sig := _base.hex_digest(text)) is not None:
                given.append(sig)
    if timestamp is None:
        raise errors.SignatureError("missing_timestamp")
    seconds = _base.parse_timestamp(timestamp)
    if not given:
        raise errors.SignatureError("malformed_signature" if offered else "missing_signature")
    return Signed(timestamp, seconds, tuple(given))
