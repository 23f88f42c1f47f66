"""Sources whose deliveries are a JSON array of events (SendGrid, HubSpot)."""

from __future__ import annotations

from typing import Any

from solo_os.sources import _base

BATCH = "batch"  # the type of a delivery whose events are not all of one type


def batch_type(document: Any, field: str) -> str | None:
    """The events' common ``field`` (their type), ``batch`` where they differ, None if none."""
    if not isinstance(document, list) or not document:
        return None
    kinds = {item.get(field) if isinstance(item, dict) else None for item in document}
    if len(kinds) != 1:
        return BATCH
    return _base.type_text(kinds.pop(), f"field '{field}' of the events")


def batch_key(document: Any, field: str, prefix: str) -> str | None:
    """``prefix`` + the events' ids, comma-joined (long ones are stored as a digest); None
    where any event lacks one (then the body's digest keys the delivery)."""
    if not isinstance(document, list) or not document:
        return None
    ids = [_base.key_text(item.get(field)) if isinstance(item, dict) else None for item in document]
    if any(i is None for i in ids):
        return None
    return prefix + ",".join(str(i) for i in ids)
