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
import math
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic

from solo_os import errors

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
    if version > current:
        raise errors.PayloadError(
            [
                _detail(
                    schema,
                    versioning.field,
                    f"version {version} is newer than this handler's version {current}",
                    "schema_version_unknown",
                )
            ]
        )
    if version < versioning.oldest:
        raise errors.PayloadError(
            [
                _detail(
                    schema,
                    versioning.field,
                    f"no upcaster from version {version} (the oldest is {versioning.oldest})",
                    "schema_version_unknown",
                )
            ]
        )
    if not isinstance(payload, dict):
        raise errors.PayloadError(
            [_detail(schema, versioning.field, "only a JSON object can be upcast", "upcast_failed")]
        )
    document: Any = copy.deepcopy(payload)
    for v in range(version, current):
        fn = versioning.upcasters[v]
        try:
            document = fn(document)
        except Exception as exc:
            name = getattr(fn, "__name__", "upcaster")
            raise errors.PayloadError(
                [
                    _detail(
                        schema,
                        versioning.field,
                        f"upcaster {name} (version {v} to {v + 1}) failed: {type(exc).__name__}",
                        "upcast_failed",
                    )
                ]
            ) from exc
        if not isinstance(document, dict):
            raise errors.PayloadError(
                [
                    _detail(
                        schema,
                        versioning.field,
                        f"upcaster for version {v} returned {type(document).__name__}, not a dict",
                        "upcast_failed",
                    )
                ]
            )
    return document


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


# --- comparing two exports ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between a saved export and the app now."""

    handler: str
    path: str  # "" for the whole payload, "amount_cents", "items[].sku", "metadata.*"
    kind: str
    message: str
    breaking: bool
    covered: bool = False  # breaking, but the handler's upcasters bring old payloads forward

    @property
    def fails(self) -> bool:
        return self.breaking and not self.covered


def compare(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """What changed from ``saved`` to ``current`` (two ``export`` documents), per handler."""
    changes: list[Change] = []
    old_handlers: Mapping[str, Any] = saved["handlers"]
    new_handlers: Mapping[str, Any] = current["handlers"]
    for name in sorted(old_handlers):
        old = old_handlers[name]
        new = new_handlers.get(name)
        if new is None:
            changes.append(
                Change(
                    name,
                    "",
                    "handler_removed",
                    f"handler removed ({old.get('source')}/{old.get('event_type')})",
                    breaking=True,
                )
            )
            continue
        if (old.get("source"), old.get("event_type")) != (new.get("source"), new.get("event_type")):
            changes.append(
                Change(
                    name,
                    "",
                    "handler_rerouted",
                    f"listens to {new.get('source')}/{new.get('event_type')} now, "
                    f"not {old.get('source')}/{old.get('event_type')}",
                    breaking=True,
                )
            )
        found = list(_schema_changes(old.get("json_schema"), new.get("json_schema")))
        covered = _covered(old, new)
        for kind, path, message, breaking in found:
            changes.append(Change(name, path, kind, message, breaking, covered and breaking))
    for name in sorted(set(new_handlers) - set(old_handlers)):
        new = new_handlers[name]
        changes.append(
            Change(
                name,
                "",
                "handler_added",
                f"new handler ({new.get('source')}/{new.get('event_type')})",
                breaking=False,
            )
        )
    return changes


def _covered(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when old payloads are upcast: the version went up and the chain reaches back."""
    try:
        old_version, new_version = int(old.get("version", 1)), int(new.get("version", 1))
        oldest = int(new.get("oldest_version", new_version))
    except (TypeError, ValueError):
        return False
    return new_version > old_version and oldest <= old_version and bool(new.get("version_field"))


_Found = tuple[str, str, str, bool]  # kind, path, message, breaking


def _schema_changes(old: Any, new: Any) -> Iterator[_Found]:
    if new is None:
        return  # no schema now: any JSON is accepted
    if old is None:
        yield ("schema_added", "", "payloads are validated now (no schema before)", True)
        return
    yield from _Comparison(old, new).run()


class _Comparison:
    """Structural comparison of two JSON Schemas (pydantic's dialect: $defs, anyOf, ...).

    Breaking: something the old schema accepted is refused by the new one (a type narrowed, a
    constraint tightened, a new required field, enum values dropped, extra fields forbidden),
    or a field is gone. Titles, descriptions and defaults are not compared.
    """

    def __init__(self, old_root: Any, new_root: Any) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self._seen: set[tuple[str, str]] = set()

    def run(self) -> Iterator[_Found]:
        yield from self._compare(self.old_root, self.new_root, "")

    # helpers -----------------------------------------------------------------------------

    def _deref(self, schema: Any, root: Any) -> Any:
        hops = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and hops < 50:
            ref: str = schema["$ref"]
            target: Any = root
            if not ref.startswith("#/"):
                return {}
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            schema = target if target is not None else {}
            hops += 1
        if isinstance(schema, dict) and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            merged.update(self._deref(schema["allOf"][0], root))
            return merged
        return schema

    def _branches(self, schema: Any, root: Any) -> list[Any]:
        schema = self._deref(schema, root)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema, dict) and isinstance(schema.get(key), list):
                out: list[Any] = []
                for branch in schema[key]:
                    out.extend(self._branches(branch, root))
                return out
        return [schema]

    @staticmethod
    def _any(schema: Any) -> bool:
        if schema is True:
            return True
        if not isinstance(schema, dict):
            return False
        meaningful = set(schema) - {"title", "description", "default", "examples", "$comment"}
        return not meaningful

    @staticmethod
    def _types(schema: Any) -> set[str] | None:
        if not isinstance(schema, dict):
            return None
        t = schema.get("type")
        if isinstance(t, str):
            return {t}
        if isinstance(t, list):
            return {str(x) for x in t}
        values = (
            schema["enum"]
            if isinstance(schema.get("enum"), list)
            else ([schema["const"]] if "const" in schema else None)
        )
        if values is not None:
            return {_json_type(v) for v in values}
        if "properties" in schema:
            return {"object"}
        if "items" in schema or "prefixItems" in schema:
            return {"array"}
        return None

    @staticmethod
    def _covers(new: set[str] | None, old: set[str] | None) -> bool:
        if new is None:
            return True
        if old is None:
            return False
        return all(t in new or (t == "integer" and "number" in new) for t in old)

    # the comparison ----------------------------------------------------------------------

    def _compare(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        if self._any(self._deref(new, self.new_root)):
            return
        if self._any(self._deref(old, self.old_root)):
            yield ("type_changed", path, "accepted any value, is restricted now", True)
            return
        key = (_ref_of(old) or f"{id(old)}", _ref_of(new) or f"{id(new)}")
        if _ref_of(old) and _ref_of(new):
            if key in self._seen:  # a recursive model: compared once
                return
            self._seen.add(key)
        olds = self._branches(old, self.old_root)
        news = self._branches(new, self.new_root)
        if len(olds) == 1 and len(news) == 1:
            yield from self._single(olds[0], news[0], path)
            return
        for branch in olds:
            candidates = [n for n in news if self._covers(self._types(n), self._types(branch))]
            if not candidates:
                yield ("type_changed", path, f"{_describe(branch)} is no longer accepted", True)
                continue
            best = min(
                (list(self._single(branch, n, path)) for n in candidates),
                key=lambda found: (sum(f[3] for f in found), len(found)),
            )
            yield from best

    def _single(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        if self._any(new):
            return
        ot, nt = self._types(old), self._types(new)
        if not self._covers(nt, ot):
            yield ("type_changed", path, f"type {_fmt(ot)} changed to {_fmt(nt)}", True)
            return
        yield from self._enum(old, new, path)
        yield from self._strings(old, new, path)
        yield from self._bounds(old, new, path)
        if (nt is None or "object" in nt) and (
            "properties" in new or "properties" in old or "additionalProperties" in new
        ):
            yield from self._object(old, new, path)
        if "items" in new and isinstance(new["items"], dict | bool):
            yield from self._compare(old.get("items", {}), new["items"], f"{path}[]")

    def _enum(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        new_values = _enum_values(new)
        if new_values is None:
            return
        old_values = _enum_values(old)
        if old_values is None:
            yield ("enum_narrowed", path, f"restricted to {new_values!r} now", True)
            return
        dropped = [v for v in old_values if v not in new_values]
        if dropped:
            yield ("enum_narrowed", path, f"no longer accepts {dropped!r}", True)
        added = [v for v in new_values if v not in old_values]
        if added:
            yield ("enum_widened", path, f"accepts {added!r} too", False)

    def _strings(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        for key in ("format", "pattern"):
            if key in new and new[key] != old.get(key):
                before = old.get(key)
                what = f"{key} {before!r} changed to {new[key]!r}" if before else f"{key} {new[key]!r} added"
                yield ("constraint_tightened", path, what, True)
        if "multipleOf" in new and new["multipleOf"] != old.get("multipleOf"):
            yield ("constraint_tightened", path, f"multipleOf {new['multipleOf']!r} now", True)

    def _bounds(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        for low, high in (
            ("minLength", "maxLength"),
            ("minItems", "maxItems"),
            ("minProperties", "maxProperties"),
        ):
            if low in new and (low not in old or new[low] > old[low]):
                yield ("constraint_tightened", path, f"{low} {old.get(low)} -> {new[low]}", True)
            if high in new and (high not in old or new[high] < old[high]):
                yield ("constraint_tightened", path, f"{high} {old.get(high)} -> {new[high]}", True)
        for side, plain, exclusive in (
            ("lower", "minimum", "exclusiveMinimum"),
            ("upper", "maximum", "exclusiveMaximum"),
        ):
            old_bound, new_bound = _bound(old, plain, exclusive), _bound(new, plain, exclusive)
            if self._types(old) == self._types(new) == {"integer"}:
                old_bound = _integral(old_bound, side == "lower")
                new_bound = _integral(new_bound, side == "lower")
            if new_bound is None:
                continue
            if old_bound is None or _tighter(new_bound, old_bound, side == "lower"):
                yield (
                    "constraint_tightened",
                    path,
                    f"{side} bound {_fmt_bound(old_bound)} -> {_fmt_bound(new_bound)}",
                    True,
                )

    def _object(self, old: Any, new: Any, path: str) -> Iterator[_Found]:
        old_props: dict[str, Any] = old.get("properties", {}) or {}
        new_props: dict[str, Any] = new.get("properties", {}) or {}
        old_required = set(old.get("required", []) or [])
        new_required = set(new.get("required", []) or [])
        for name, old_prop in old_props.items():
            where = _join(path, name)
            if name not in new_props:
                yield ("removed_field", where, "field removed", True)
                continue
            yield from self._compare(old_prop, new_props[name], where)
        for name in sorted(new_required - old_required):
            where = _join(path, name)
            if name in old_props:
                yield ("new_required_field", where, "optional before, required now", True)
            else:
                yield ("new_required_field", where, "new required field", True)
        for name in sorted(set(new_props) - set(old_props) - new_required):
            yield ("added_field", _join(path, name), "new optional field", False)
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            yield (
                "extra_forbidden",
                path or "(payload)",
                "fields not in the schema are refused now",
                True,
            )
        elif isinstance(new_extra, dict) and old_extra is not False:
            yield from self._compare(
                old_extra if isinstance(old_extra, dict) else {}, new_extra, _join(path, "*")
            )


def _ref_of(schema: Any) -> str | None:
    return schema.get("$ref") if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) else None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _enum_values(schema: Any) -> list[Any] | None:
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _bound(schema: Any, plain: str, exclusive: str) -> tuple[float, bool] | None:
    found: list[tuple[float, bool]] = []
    if isinstance(schema.get(plain), int | float) and not isinstance(schema.get(plain), bool):
        found.append((float(schema[plain]), False))
    if isinstance(schema.get(exclusive), int | float) and not isinstance(schema.get(exclusive), bool):
        found.append((float(schema[exclusive]), True))
    if not found:
        return None
    lower = plain == "minimum"
    # the tighter of the two, if both are given
    best = found[0]
    for b in found[1:]:
        if _tighter(b, best, lower):
            best = b
    return best


def _integral(b: tuple[float, bool] | None, lower: bool) -> tuple[float, bool] | None:
    """An integer bound made inclusive: ``> 0`` and ``>= 1`` admit the same integers."""
    if b is None:
        return None
    value, exclusive = b
    if lower:
        return (float(math.floor(value) + 1 if exclusive else math.ceil(value)), False)
    return (float(math.ceil(value) - 1 if exclusive else math.floor(value)), False)


def _tighter(a: tuple[float, bool], b: tuple[float, bool], lower: bool) -> bool:
    """True when bound ``a`` refuses something bound ``b`` accepts."""
    if a[0] != b[0]:
        return a[0] > b[0] if lower else a[0] < b[0]
    return a[1] and not b[1]


def _fmt_bound(b: tuple[float, bool] | None) -> str:
    if b is None:
        return "none"
    return f"{'exclusive ' if b[1] else ''}{b[0]:g}"


def _fmt(types_: set[str] | None) -> str:
    return "any" if types_ is None else "|".join(sorted(types_))


def _describe(schema: Any) -> str:
    types_ = _Comparison._types(schema)
    return f"type {_fmt(types_)}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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
