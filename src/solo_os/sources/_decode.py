"""How a verified body becomes the document the schema sees (SPEC section 2).

JSON is decoded by ``solo_os.core.json_decoder`` (the one decoder, with its depth limit). A form
(``application/x-www-form-urlencoded``: Slack slash commands and interactivity, Twilio, GitHub's
form content type) is decoded after its signature was checked over the raw bytes.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

from solo_os import errors
from solo_os.core import json_decoder as _json

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000  # Slack, Twilio and GitHub send a few dozen; more is not a provider


class Headers(Protocol):
    def getlist(self, key: str) -> list[str]: ...


def is_form(headers: Headers) -> bool:
    """Whether the delivery says it is ``application/x-www-form-urlencoded``."""
    values = headers.getlist("content-type")
    return len(values) == 1 and values[0].partition(";")[0].strip().lower() == FORM_TYPE


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """A form body's fields in order (blank values kept); ``PayloadError`` if it is not one."""
    try:
        return urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # not UTF-8 (also once percent-decoded), or too many fields
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise errors.PayloadError(
            [{"loc": ["body"], "msg": f"not a form: {reason}", "type": "form_invalid"}]
        ) from None


def _looks_like_json(body: bytes) -> bool:
    """A body labelled as a form that is a JSON object or array (``curl --data '{...}'`` sends
    JSON with curl's default form content type); no provider's form starts with ``{`` or ``[``."""
    return body.lstrip()[:1] in (b"{", b"[")


def decode_body(headers: Headers, body: bytes) -> Any:
    """The document a verified body stands for (SPEC section 2, form-encoded deliveries).

    JSON is decoded by ``solo_os.core.json_decoder`` (its depth limit). A form
    (``application/x-www-form-urlencoded``, unless the body starts like a JSON object or array,
    as ``curl --data '{...}'`` sends it) whose ``payload`` field holds a JSON object or array
    (Slack interactivity, GitHub's form content type) is that JSON; any other form is its fields
    as a dict of strings, the first value of a repeated field (Slack slash commands, Twilio).
    Raises ``PayloadError`` where the body is neither.
    """
    if is_form(headers) and not _looks_like_json(body):
        fields: dict[str, str] = {}
        for name, value in form_fields(body):
            fields.setdefault(name, value)
        inner = fields.get("payload")
        if inner is not None:
            try:
                document = _json.loads(inner)
            except _json.JSONDecodeError:
                document = None
            if isinstance(document, dict | list):
                return document
        return fields
    try:
        return _json.loads(body)
    except _json.JSONDecodeError as exc:
        raise errors.PayloadError(
            [{"loc": ["body"], "msg": f"not JSON: {exc}", "type": "json_invalid"}]
        ) from None
