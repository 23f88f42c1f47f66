"""Session cookies are signed and verified by itsdangerous (issue 20, item 6)."""

from __future__ import annotations

import base64
import hashlib

import itsdangerous
import orjson

from solo_os.admin import auth

TOKEN = "cookie-admin-token-0123456789"


def _signer(token: str) -> itsdangerous.Signer:
    return itsdangerous.Signer(
        token, salt="solo-os admin session v1", key_derivation="hmac", digest_method=hashlib.sha256
    )


def test_the_cookie_is_an_itsdangerous_signature_of_the_session() -> None:
    guard = auth.Guard(TOKEN, session_seconds=60)
    value, session = guard.new_session(now=1000)
    payload = _signer(TOKEN).unsign(value)  # raises BadSignature if it were anything else
    data = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    assert data == {"v": 1, "csrf": session.csrf, "iat": 1000, "exp": 1060}


def test_a_session_signed_under_another_token_or_salt_is_refused() -> None:
    guard = auth.Guard(TOKEN, session_seconds=60)
    body = base64.urlsafe_b64encode(
        orjson.dumps({"v": 1, "csrf": "attacker", "iat": 1000, "exp": 10**10})
    ).rstrip(b"=")
    assert guard.read_session(_signer(TOKEN).sign(body).decode(), now=1030) is not None
    assert guard.read_session(_signer(TOKEN + "x").sign(body).decode(), now=1030) is None
    other_salt = itsdangerous.Signer(TOKEN, salt="other", key_derivation="hmac", digest_method=hashlib.sha256)
    assert guard.read_session(other_salt.sign(body).decode(), now=1030) is None
    sha1 = itsdangerous.Signer(TOKEN, salt="solo-os admin session v1", key_derivation="hmac")
    assert guard.read_session(sha1.sign(body).decode(), now=1030) is None
