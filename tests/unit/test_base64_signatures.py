"""Pins a bug the fuzzer found: a base64 signature with its unused low bits changed verified."""

from __future__ import annotations

import base64
import string

import pytest

from solo_os import errors
from solo_os.sources import DictHeaders, _base
from solo_os.sources.shopify import ShopifySource

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def _twin(encoded: str) -> str:
    """The same 32 bytes, written with a different last character (non-canonical base64)."""
    last = encoded[-2]  # 44 characters: 43 data + one "=", the last data char carries 2 spare bits
    return encoded[:-2] + ALPHABET[ALPHABET.index(last) ^ 1] + "="


def test_non_canonical_base64_is_not_a_digest() -> None:
    raw = bytes(range(32))
    good = base64.b64encode(raw).decode()
    assert _base.base64_digest(good) == raw
    assert base64.b64decode(_twin(good)) == raw  # decoders accept it...
    assert _base.base64_digest(_twin(good)) is None  # ...we do not


def test_shopify_refuses_a_non_canonical_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    source = ShopifySource(secret_env="SHOPIFY_SECRET")
    assert source.bind("shop", {"SHOPIFY_SECRET": "shpss_0123456789abcdef"}) == []
    body = b'{"id": 1}'
    headers = source.sign(body, 0)
    [name] = source.secret_headers & set(headers)
    source.authenticate(DictHeaders(headers), body, 0)
    with pytest.raises(errors.SignatureError):
        source.authenticate(DictHeaders({**headers, name: _twin(headers[name])}), body, 0)
