"""How a verified body becomes the schema's document (SPEC section 2, form-encoded rule)."""

from __future__ import annotations

from typing import Any

import pytest

from solo_os import errors
from solo_os.sources import _decode
from solo_os.sources._base import DictHeaders

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (JSON, b'{"a": 1}', {"a": 1}),
        ({}, b"[1, 2]", [1, 2]),
        (FORM, b"command=%2Fdeploy&text=now&text=later", {"command": "/deploy", "text": "now"}),
        (FORM, b"payload=%7B%22type%22%3A%22block_actions%22%7D", {"type": "block_actions"}),
        (FORM, b"payload=not-json&x=1", {"payload": "not-json", "x": "1"}),
        # curl --data '{...}' labels JSON as a form: a body that starts like JSON is JSON
        (FORM, b'{"id": "evt_1", "amount": 5}', {"id": "evt_1", "amount": 5}),
        (FORM, b'  [{"id": 1}]', [{"id": 1}]),
    ],
)
def test_decode_body(headers: dict[str, str], body: bytes, expected: Any) -> None:
    assert _decode.decode_body(DictHeaders(headers), body) == expected


@pytest.mark.parametrize(
    ("headers", "body", "kind"),
    [
        (JSON, b"a=1", "json_invalid"),
        (FORM, b'{"unterminated": ', "json_invalid"),
        (FORM, b"text=%FF", "form_invalid"),
        (JSON, b"[" * 65 + b"]" * 65, "json_invalid"),
    ],
)
def test_undecodable_bodies_name_the_problem(headers: dict[str, str], body: bytes, kind: str) -> None:
    with pytest.raises(errors.PayloadError) as caught:
        _decode.decode_body(DictHeaders(headers), body)
    assert caught.value.details[0]["type"] == kind
