"""The JSON decoder's depth limit (``MAX_DEPTH``) holds whatever the input's type, and whether or
not the document has enough brackets to be walked (a document with at most ``MAX_DEPTH``
opening brackets cannot be nested deeper, and is not walked)."""

from __future__ import annotations

import pytest

from solo_os.core import json_decoder
from solo_os.core.json_decoder import MAX_DEPTH


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("kind", [str, bytes, bytearray, memoryview])
def test_depth_limit_for_every_input_type(kind: type) -> None:
    def as_input(text: str) -> object:
        return text if kind is str else kind(text.encode())

    assert json_decoder.loads(as_input(_nested(MAX_DEPTH)))  # type: ignore[arg-type]
    with pytest.raises(json_decoder.JSONDecodeError, match="nested deeper"):
        json_decoder.loads(as_input(_nested(MAX_DEPTH + 1)))  # type: ignore[arg-type]
    # Deep, with many more brackets beside it: still refused.
    wide_and_deep = '{"a": [' + ", ".join(["[]"] * 100) + "], " + f'"b": {_nested(MAX_DEPTH + 1)}}}'
    with pytest.raises(json_decoder.JSONDecodeError, match="nested deeper"):
        json_decoder.loads(as_input(wide_and_deep))  # type: ignore[arg-type]


def test_many_brackets_but_shallow_is_accepted() -> None:
    wide = "[" + ", ".join(["[]"] * 200) + "]"
    assert len(json_decoder.loads(wide)) == 200
    in_strings = '{"text": "' + "[{" * 200 + '"}'
    assert json_decoder.loads(in_strings.encode())["text"] == "[{" * 200
