"""Public keys that verify (Discord's Ed25519, SendGrid's ECDSA P-256) and test keys that sign.

In production the secret variable holds the provider's public key: nothing secret, but it
decides what is authentic, so it is configured like a secret. The provider's private key never
leaves the provider, so ``solo-os send`` and the test kit cannot sign with it: for them the
variable may hold a *test* private key instead, written ``private:<...>``; the source verifies
with its public half and signs with it. Never put a ``private:`` key in production config (it
would only make the endpoint accept deliveries signed with that test key).
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

PRIVATE = "private:"
_ECDSA = ec.ECDSA(hashes.SHA256())


def _hex(text: str, size: int) -> bytes | None:
    if len(text) != 2 * size:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return None


# --- Ed25519 (Discord): keys as hex ----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def ed25519_key(secret: str) -> tuple[ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey | None]:
    """The public key in ``secret`` (64 hex digits) or a test ``private:<64 hex seed>``.

    Raises ``ValueError`` (with no part of the value in it) when it is neither.
    """
    if secret.startswith(PRIVATE):
        seed = _hex(secret[len(PRIVATE):], 32)
        if seed is None:
            raise ValueError("not a private:<64 hex digits> test key")
        private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        return private.public_key(), private
    raw = _hex(secret, 32)
    if raw is None:
        raise ValueError("not an Ed25519 public key (64 hex digits)")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw), None
    except ValueError:
        raise ValueError("not an Ed25519 public key") from None


def ed25519_verify(keys: list[ed25519.Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    found = False
    for key in keys:  # every key is tried (no early exit), like any_match
        try:
            key.verify(signature, message)
            found = True
        except InvalidSignature:
            pass
    return found


def new_ed25519_test_key() -> str:
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return PRIVATE + seed.hex()


def ed25519_public_hex(secret: str) -> str:
    public = ed25519_key(secret)[0]
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


# --- ECDSA P-256 (SendGrid): keys as base64 DER ---------------------------------------------


@functools.lru_cache(maxsize=64)
def p256_key(secret: str) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey | None]:
    """The public key in ``secret`` (base64 DER, as SendGrid shows it) or a test
    ``private:<base64 PKCS#8 DER>``. Raises ``ValueError`` when it is neither."""
    private_form = secret.startswith(PRIVATE)
    raw = _b64(secret[len(PRIVATE):] if private_form else secret)
    if raw is None:
        raise ValueError("not base64")
    key: Any
    try:
        if private_form:
            key = serialization.load_der_private_key(raw, password=None)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError):
        raise ValueError("not a DER-encoded key") from None
    if private_form:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not an ECDSA P-256 private key")
        return key.public_key(), key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key, None


def p256_verify(keys: list[ec.EllipticCurvePublicKey], signature: bytes, message: bytes) -> bool:
    found = False
    for key in keys:
        try:
            key.verify(signature, message, _ECDSA)
            found = True
        except InvalidSignature:
            pass
    return found


def p256_sign(private: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return private.sign(message, _ECDSA)


def new_p256_test_key() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return PRIVATE + base64.b64encode(der).decode("ascii")


def p256_public_b64(secret: str) -> str:
    public = p256_key(secret)[0]
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")
