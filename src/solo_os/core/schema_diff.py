"""Comparing two schema exports: what changed per handler, and which changes break producers.

``compare`` takes two ``schemas.export`` documents. A change breaks producers when a payload
valid before is refused now, or a field others rely on is gone; a breaking change the handler's
upcasters cover (its version went up and an upcaster starts at or below the saved version) is
reported, not failed. The comparison is structural over pydantic's JSON Schema dialect.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


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
