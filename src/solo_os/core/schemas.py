"""Event schema versions: upcasting old payloads, exporting JSON Schemas, finding breaking changes.

A handler whose schema changed declares how to bring older payloads up to date::

    @app.on("billing", "invoice.paid", schema=InvoicePaidV3,
            upcast={1: v1_to_v2, 2: v2_to_v3}, version_field="schema_version")

The payload's version is read from ``version_field`` (a dotted path; a payload without it is
version 1); the handler's version is one past its newest upcaster. A payload of version ``v``
goes through ``upcast[v]``, ``upcast[v + 1]``, ... before the schema validates it, at ingress
and in the worker, so stored events still replay after the schema moved on. Upcasters are
plain functions from one version's dict to the next one's; they get a copy.

``export`` writes every handler's input as JSON Schema; ``compare`` lists what changed between
two exports and which changes break producers (a payload valid before is refused now, or a
field others rely on is gone). A breaking change the handler's upcasters cover (its version
went up and an upcaster starts at or below the saved version) is reported, not failed.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic

from solo_os import errors
from solo_os.core.schema_diff import Change, compare

DEFAULT_VERSION_FIELD = "schema_version"
EXPORT_FORMAT = "solo-os.schemas/1"
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


# --- versions and upcasting -------------------------------------------------------------------


@dataclass(frozen=True)
class Versioning:
    """Where a payload says its version, and the functions that bring it forward."""

    field: str
    upcasters: Mapping[int, Upcaster]

    @classmethod
    def build(cls, upcast: Mapping[int, Upcaster], field: str) -> Versioning:
        """Validate a handler's ``upcast=`` and ``version_field=`` (``ConfigError`` if wrong)."""
        if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
            raise errors.ConfigError(f"version_field={field!r}: give a dotted path like 'meta.version'")
        if not isinstance(upcast, Mapping) or not upcast:
            raise errors.ConfigError("upcast= must map versions to functions, e.g. {1: v1_to_v2}")
        versions = list(upcast)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in versions):
            raise errors.ConfigError(f"upcast= keys must be versions 1, 2, ...; got {versions!r}")
        ordered = sorted(versions)
        if ordered != list(range(ordered[0], ordered[-1] + 1)):
            raise errors.ConfigError(
                f"upcast= versions must have no gaps (each upcaster goes one version up); got {ordered!r}"
            )
        for v, fn in upcast.items():
            if not callable(fn):
                raise errors.ConfigError(f"upcast[{v}] is not a function")
        return cls(field, types.MappingProxyType({v: upcast[v] for v in ordered}))

    @property
    def current(self) -> int:
        """The version the handler's schema stands for: one past the newest upcaster."""
        return max(self.upcasters) + 1

    @property
    def oldest(self) -> int:
        """The oldest payload version that can still be brought up to date."""
        return min(self.upcasters)


def payload_version(versioning: Versioning, payload: Any, schema: str = "") -> int:
    """The version a payload declares (1 when it names none); ``PayloadError`` if unreadable."""
    value: Any = payload
    for part in versioning.field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.PayloadError(
            [
                _detail(
                    schema,
                    versioning.field,
                    "the schema version must be a positive integer",
                    "schema_version",
                )
            ]
        )
    return value


def upcast(versioning: Versioning | None, payload: Any, schema: str = "") -> Any:
    """``payload`` brought to the handler's current version (unchanged when already there).

    Raises ``PayloadError`` when the version is unknown or an upcaster fails; the message never
    carries payload values.
    """
    if versioning is None:
        return payload
    version = payload_version(versioning, payload, schema)
    current = versioning.current
    if version == current:
        return payload
    field = versioning.field
    if version > current:
        raise _refused(
            schema, field, f"version {version} is newer than this handler's version {current}",
            "schema_version_unknown",
        )
    if version < versioning.oldest:
        raise _refused(
            schema, field, f"no upcaster from version {version} (the oldest is {versioning.oldest})",
            "schema_version_unknown",
        )
    if not isinstance(payload, dict):
        raise _refused(schema, field, "only a JSON object can be upcast", "upcast_failed")
    document: Any = copy.deepcopy(payload)
    for v in range(version, current):
        fn = versioning.upcasters[v]
        try:
            document = fn(document)
        except Exception as exc:
            name = getattr(fn, "__name__", "upcaster")
            raise _refused(
                schema, field, f"upcaster {name} (version {v} to {v + 1}) failed: {type(exc).__name__}",
                "upcast_failed",
            ) from exc
        if not isinstance(document, dict):
            raise _refused(
                schema, field, f"upcaster for version {v} returned {type(document).__name__}, not a dict",
                "upcast_failed",
            )
    return document


def _refused(schema: str, field: str, msg: str, kind: str) -> errors.PayloadError:
    return errors.PayloadError([_detail(schema, field, msg, kind)])


def _detail(schema: str, field: str, msg: str, kind: str) -> dict[str, Any]:
    return {"schema": schema, "loc": field.split("."), "msg": msg, "type": kind}


# --- export -------------------------------------------------------------------------------------


class HandlerLike(Protocol):
    """What ``export`` reads of a handler (``app.Handler``)."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def schema(self) -> type[pydantic.BaseModel] | None: ...
    @property
    def versioning(self) -> Versioning | None: ...


def export(handlers: Mapping[str, HandlerLike], service: str = "") -> dict[str, Any]:
    """Every event handler's input as JSON Schema (without a schema it takes any JSON: null)."""
    out: dict[str, Any] = {}
    for name in sorted(handlers):
        h = handlers[name]
        if getattr(h, "kind", "event") != "event":
            continue  # a cron handler takes no event: no input contract
        v = h.versioning
        out[name] = {
            "source": h.source,
            "event_type": h.event_type,
            "schema": h.schema.__name__ if h.schema is not None else None,
            "version": v.current if v is not None else 1,
            "oldest_version": v.oldest if v is not None else 1,
            "version_field": v.field if v is not None else None,
            "json_schema": (h.schema.model_json_schema(mode="validation") if h.schema is not None else None),
        }
    return {"format": EXPORT_FORMAT, "service": service, "handlers": out}


def load_export(document: Any, origin: str) -> dict[str, Any]:
    """A saved export, checked for shape (``ConfigError`` naming ``origin`` otherwise)."""
    if (
        not isinstance(document, dict)
        or document.get("format") != EXPORT_FORMAT
        or not isinstance(document.get("handlers"), dict)
        or not all(isinstance(h, dict) for h in document["handlers"].values())
    ):
        raise errors.ConfigError(
            f"{origin}: not a solo-os schemas export (format {EXPORT_FORMAT!r}); "
            "make one with 'solo-os schemas export --out FILE'"
        )
    return document


__all__ = [
    "DEFAULT_VERSION_FIELD",
    "Change",
    "Versioning",
    "compare",
    "export",
    "load_export",
    "payload_version",
    "upcast",
]
